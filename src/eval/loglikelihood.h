#pragma once
// lm-eval's loglikelihood(context, continuation) on our runtime: requests encoded as `_encode_pair` does,
// left-truncated to the model's context, and scored in packed batches where every distinct context is
// evaluated once and each continuation branches off its cached keys and values (TokenPlacement).
#include <functional>
#include <span>
#include <vector>

#include "eval/tasks/task.h"
#include "model/model.h"

namespace fbq {

struct EncodedRequest {
  std::vector<int> context;       // BOS first when requested
  std::vector<int> continuation;  // whole[len(context):], whole = encode(context + continuation)
};

// `_encode_pair`: trailing whitespace of the context moves into the continuation, and the continuation's
// tokens are the tail of the joint string's tokens. An empty context becomes [BOS] (lm-eval's prefix token).
EncodedRequest encode_pair(const Tokenizer& tokenizer, std::string_view context, std::string_view continuation, bool bos);

struct RequestScore {
  double loglikelihood = 0;  // Σ log p(continuation token | everything before it)
  bool greedy = false;       // every continuation token is the argmax at its position
  int continuation_tokens = 0;
  bool truncated = false;  // context + continuation exceeded max_length + 1 tokens; the context lost its left part
};

struct ScoreOptions {
  bool bos = true;
  int batch_tokens = 4096;  // tokens per packed forward pass
  int max_length = 0;       // 0: the model's max_position_embeddings (what lm-eval's HF backend uses)
  // Called after every batch with the number of requests scored so far.
  std::function<void(std::size_t scored)> on_progress;
};

// Scores every request (in order). Consecutive requests with the same encoded context share its forward pass.
std::vector<RequestScore> score_requests(const Model& model, std::span<const Request> requests, const ScoreOptions& options);

// The same log-likelihoods from one plain forward pass per request (no sharing, no packing): the reference
// the packed path is tested against.
RequestScore score_request_alone(const Model& model, const Request& request, const ScoreOptions& options);

}  // namespace fbq
