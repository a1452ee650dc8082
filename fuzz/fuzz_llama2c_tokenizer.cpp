// libFuzzer harness for llama2.c's tokenizer.bin. The file does not store its vocabulary size (run.c is
// told it by the checkpoint), so the input's first byte gives it (+1) and the rest is the file.
#include "fuzz_tokenizer_support.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto path = fbq::fuzz::write_input("fuzz_llama2c_tokenizer", "tokenizer.bin", data + 1, size - 1);
  fbq::fuzz::exercise([&] { return fbq::load_llama2c_tokenizer(path, data[0] + 1); });
  return 0;
}
