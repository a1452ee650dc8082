#include "eval/loglikelihood.h"

#include <algorithm>
#include <cmath>

#include "model/transformer.h"
#include "util/error.h"

namespace fbq {
namespace {

// A request ready for the model: the input tokens before its first continuation token, and the continuation.
struct PreparedRequest {
  std::vector<int> prefix;
  std::vector<int> continuation;
  bool truncated = false;
};

int max_length_of(const Model& model, const ScoreOptions& options) {
  return options.max_length > 0 ? options.max_length : model.config.max_seq_len;
}

// Model input = (context + continuation)[-(max_length + 1):][:-1], as lm-eval's HF backend builds it.
PreparedRequest prepare(const Model& model, const Request& request, const ScoreOptions& options) {
  auto encoded = encode_pair(*model.tokenizer, request.context, request.continuation, options.bos);
  const std::size_t max_length = max_length_of(model, options);
  if (encoded.continuation.empty())
    fail("the continuation '{}' adds no tokens after its context (it merges into the context's last token)",
         request.continuation);
  if (encoded.continuation.size() > max_length)
    fail("a continuation of {} tokens does not fit the model's context of {}", encoded.continuation.size(), max_length);
  const std::size_t total = encoded.context.size() + encoded.continuation.size();
  PreparedRequest prepared;
  prepared.truncated = total > max_length + 1;
  const std::size_t drop = prepared.truncated ? total - (max_length + 1) : 0;
  prepared.prefix.assign(encoded.context.begin() + static_cast<std::ptrdiff_t>(drop), encoded.context.end());
  prepared.continuation = std::move(encoded.continuation);
  return prepared;
}

// Per logit row: the log of the softmax denominator and the argmax.
struct RowStatistics {
  double log_normalizer = 0;
  int argmax = 0;
};

std::vector<RowStatistics> row_statistics(std::span<const float> logits, int vocab) {
  const int rows = static_cast<int>(logits.size() / vocab);
  std::vector<RowStatistics> stats(rows);
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const float* row = logits.data() + static_cast<std::size_t>(r) * vocab;
    int best = 0;
    for (int v = 1; v < vocab; ++v)
      if (row[v] > row[best]) best = v;  // the first maximum, as torch.argmax
    double total = 0.0;
    for (int v = 0; v < vocab; ++v) total += std::exp(static_cast<double>(row[v]) - row[best]);
    stats[r] = {std::log(total) + row[best], best};
  }
  return stats;
}

RequestScore score_from_rows(const PreparedRequest& request, std::span<const float> logits, int vocab,
                             const std::vector<RowStatistics>& stats, const std::vector<int>& rows) {
  RequestScore score{.greedy = true, .continuation_tokens = static_cast<int>(request.continuation.size()),
                     .truncated = request.truncated};
  for (std::size_t j = 0; j < request.continuation.size(); ++j) {
    const int token = request.continuation[j], row = rows[j];
    score.loglikelihood += logits[static_cast<std::size_t>(row) * vocab + token] - stats[row].log_normalizer;
    score.greedy = score.greedy && stats[row].argmax == token;
  }
  return score;
}

// A run of consecutive requests with the same prefix: one context, several continuations branching off it.
struct Group {
  std::size_t first = 0, count = 0;
  int tokens = 0;  // prefix + Σ (continuation − 1)
};

std::vector<Group> group_requests(const std::vector<PreparedRequest>& prepared) {
  std::vector<Group> groups;
  for (std::size_t i = 0; i < prepared.size(); ++i) {
    if (groups.empty() || prepared[i].prefix != prepared[groups.back().first].prefix) {
      groups.push_back({i, 0, static_cast<int>(prepared[i].prefix.size())});
    }
    groups.back().count++;
    groups.back().tokens += static_cast<int>(prepared[i].continuation.size()) - 1;
  }
  return groups;
}

// Packs groups [begin, end) into one forward pass and scores their requests.
class PackedBatch {
 public:
  void add(const Group& group, const std::vector<PreparedRequest>& prepared) {
    const auto& prefix = prepared[group.first].prefix;
    const int prefix_begin = static_cast<int>(tokens_.size());
    for (std::size_t t = 0; t < prefix.size(); ++t) push(prefix[t], static_cast<int>(t), 0, 0, prefix_begin);
    const int prefix_end = static_cast<int>(tokens_.size());
    const int context_row = row_of(prefix_end - 1);
    for (std::size_t i = group.first; i < group.first + group.count; ++i) {
      const auto& continuation = prepared[i].continuation;
      const int own_begin = static_cast<int>(tokens_.size());
      std::vector<int> rows = {context_row};
      for (std::size_t j = 0; j + 1 < continuation.size(); ++j) {
        push(continuation[j], static_cast<int>(prefix.size() + j), prefix_begin, prefix_end, own_begin);
        rows.push_back(row_of(static_cast<int>(tokens_.size()) - 1));
      }
      request_rows_.push_back({i, std::move(rows)});
    }
  }

  void score(InferenceSession& session, const std::vector<PreparedRequest>& prepared, int vocab,
             std::vector<RequestScore>& scores) {
    const auto logits = session.forward_packed(tokens_, placement_, logit_rows_);
    const auto stats = row_statistics(logits, vocab);
    for (const auto& [index, rows] : request_rows_) scores[index] = score_from_rows(prepared[index], logits, vocab, stats, rows);
  }

  int size() const { return static_cast<int>(tokens_.size()); }

 private:
  void push(int token, int position, int prefix_begin, int prefix_end, int own_begin) {
    const int slot = static_cast<int>(tokens_.size());
    tokens_.push_back(token);
    placement_.push_back({slot, position, prefix_begin, prefix_end, own_begin});
  }
  int row_of(int slot) {
    logit_rows_.push_back(slot);
    return static_cast<int>(logit_rows_.size()) - 1;
  }

  std::vector<int> tokens_, logit_rows_;
  std::vector<TokenPlacement> placement_;
  std::vector<std::pair<std::size_t, std::vector<int>>> request_rows_;  // request → logit row of each token
};

}  // namespace

EncodedRequest encode_pair(const Tokenizer& tokenizer, std::string_view context, std::string_view continuation, bool bos) {
  EncodedRequest encoded;
  if (context.empty()) {
    encoded.context = {tokenizer.bos_id()};
    encoded.continuation = tokenizer.encode(continuation, /*add_bos=*/false);
    return encoded;
  }
  const auto kept = context.find_last_not_of(" \t\n\r\v\f");
  const std::size_t spaces = kept == std::string_view::npos ? context.size() : context.size() - kept - 1;
  std::string moved_continuation = std::string(context.substr(context.size() - spaces)) + std::string(continuation);
  context.remove_suffix(spaces);
  const auto whole = tokenizer.encode(std::string(context) + moved_continuation, bos);
  encoded.context = tokenizer.encode(context, bos);
  if (encoded.context.size() < whole.size())
    encoded.continuation.assign(whole.begin() + static_cast<std::ptrdiff_t>(encoded.context.size()), whole.end());
  return encoded;
}

std::vector<RequestScore> score_requests(const Model& model, std::span<const Request> requests, const ScoreOptions& options) {
  if (!model.tokenizer) fail("scoring needs the model's tokenizer");
  if (options.batch_tokens < 1) fail("--batch-tokens must be positive (got {})", options.batch_tokens);
  std::vector<PreparedRequest> prepared(requests.size());
  std::vector<std::string> errors(requests.size());
#pragma omp parallel for schedule(dynamic, 16)
  for (std::size_t i = 0; i < requests.size(); ++i) {
    try {
      prepared[i] = prepare(model, requests[i], options);
    } catch (const std::exception& e) {
      errors[i] = e.what();
    }
  }
  for (std::size_t i = 0; i < errors.size(); ++i)
    if (!errors[i].empty()) fail("request {}: {}", i, errors[i]);

  const auto groups = group_requests(prepared);
  int largest = 0;
  for (const auto& group : groups) largest = std::max(largest, group.tokens);
  InferenceSession session(model, std::max(options.batch_tokens, largest));
  std::vector<RequestScore> scores(requests.size());
  for (std::size_t g = 0; g < groups.size();) {
    PackedBatch batch;
    std::size_t scored = 0;
    while (g < groups.size() && (batch.size() == 0 || batch.size() + groups[g].tokens <= options.batch_tokens)) {
      batch.add(groups[g], prepared);
      scored = groups[g].first + groups[g].count;
      ++g;
    }
    batch.score(session, prepared, model.config.vocab_size, scores);
    if (options.on_progress) options.on_progress(scored);
  }
  return scores;
}

RequestScore score_request_alone(const Model& model, const Request& request, const ScoreOptions& options) {
  const auto prepared = prepare(model, request, options);
  std::vector<int> input = prepared.prefix;
  input.insert(input.end(), prepared.continuation.begin(), prepared.continuation.end() - 1);
  InferenceSession session(model, static_cast<int>(input.size()));
  const int vocab = model.config.vocab_size;
  const auto logits = session.forward(input, 0, /*all_logits=*/true);
  const auto stats = row_statistics(logits, vocab);
  std::vector<int> rows;
  for (std::size_t j = 0; j < prepared.continuation.size(); ++j) rows.push_back(static_cast<int>(prepared.prefix.size() + j) - 1);
  return score_from_rows(prepared, logits, vocab, stats, rows);
}

}  // namespace fbq
