#pragma once
// End-to-end speed of a model (`fbq bench MODEL`): batched prefill and one-token decode, tokens per second.
#include "model/model.h"

namespace fbq {

struct SpeedOptions {
  int prompt_tokens = 128;  // prefill length
  int decode_tokens = 128;  // decode steps after the prefill
  int repeats = 3;          // best of
};

struct SpeedResult {
  double prefill_tokens_per_second = 0;
  double decode_tokens_per_second = 0;
  double weight_bytes = 0;  // what the runtime holds (one decode step reads the linears once)
};

// Feeds a fixed token sequence (BOS, then ids striding the vocabulary): speed does not depend on the text.
SpeedResult measure_speed(const Model& model, const SpeedOptions& options);

}  // namespace fbq
