#pragma once
// What `fbq quantize`'s per-layer checkpoint costs at a given model shape (`fbq bench checkpoint`): one layer's
// commit through write_checkpoint, i.e. the calibration stream entering the next layer (windows × seqlen ×
// hidden float32, twice when the float model's stream is tracked) and checkpoint.json, into a fresh directory.
#include <cstdint>
#include <filesystem>

namespace fbq {

struct CheckpointCost {
  std::uintmax_t bytes = 0;
  double seconds = 0;  // best of the repeats
};

CheckpointCost measure_checkpoint_cost(const std::filesystem::path& dir, int hidden, int windows, int seqlen,
                                       bool float_stream, int repeats = 3);

}  // namespace fbq
