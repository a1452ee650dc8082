#include "eval/checkpoint_bench.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "quant/checkpoint.h"

namespace fbq {

CheckpointCost measure_checkpoint_cost(const std::filesystem::path& dir, int hidden, int windows, int seqlen,
                                       bool float_stream, int repeats) {
  PipelineState state;
  state.layers_done = 1;
  state.hidden.assign(static_cast<std::size_t>(hidden) * windows * seqlen, 0.5f);
  if (float_stream) state.float_hidden = state.hidden;
  const auto scratch = dir / (".fbq-checkpoint-bench-" + std::to_string(getpid()));
  CheckpointCost cost{.seconds = 1e30};
  for (int repeat = 0; repeat < repeats; ++repeat) {
    std::filesystem::remove_all(scratch);
    std::filesystem::create_directories(scratch);
    const auto start = std::chrono::steady_clock::now();
    cost.bytes = write_checkpoint(scratch, {{"bench", "fbq bench checkpoint"}}, state, nlohmann::json::object());
    cost.seconds = std::min(cost.seconds, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::filesystem::remove_all(scratch);
  return cost;
}

}  // namespace fbq
