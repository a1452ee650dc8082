#pragma once
// The stories260K greedy oracle (shared/models/stories260K/reference_greedy_256.txt, from llama2.c `run.c`),
// for every file format that holds those weights.
#include <string>

#include "eval/generate.h"
#include "model/model.h"

namespace fbq::test {

// What llama2.c's `run -t 0 -n 256 -i "Once upon a time"` prints for `model`: `-n 256` runs positions
// 0..255, prompt (with BOS) included, and samples after each one, so it prints the prompt after BOS plus
// 257 - prompt_length new tokens, then "\n".
inline std::string llama2c_greedy_256(const Model& model) {
  const std::string prompt = "Once upon a time";
  GenerateOptions options;
  options.max_new_tokens = 257 - static_cast<int>(model.tokenizer->encode(prompt, true).size());
  return generate(model, prompt, options).text + "\n";
}

}  // namespace fbq::test
