// libFuzzer harness for llama2.c checkpoints (.bin: 7×int32 header, float32 tensors in run.c's order).
#include "fuzz_files.h"
#include "model/model.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = fbq::fuzz::write_input("fuzz_llama2c", "model.bin", data, size);
  try {
    fbq::load_model(path, {.require_tokenizer = false});
  } catch (const fbq::Error&) {
  }
  return 0;
}
