// libFuzzer harness for the tiktoken reader (base64 token, rank per line).
#include "fuzz_tokenizer_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = fbq::fuzz::write_input("fuzz_tiktoken", "tokenizer.model", data, size);
  fbq::fuzz::exercise([&] { return fbq::load_tiktoken(path); });
  return 0;
}
