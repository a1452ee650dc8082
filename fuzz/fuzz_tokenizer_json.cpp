// libFuzzer harness for the Hugging Face tokenizer.json reader: any input must load (and then encode and
// decode a fixed text without trouble) or be refused with fbq::Error; anything else is a bug.
#include "fuzz_tokenizer_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = fbq::fuzz::write_input("fuzz_tokenizer_json", "tokenizer.json", data, size);
  fbq::fuzz::exercise([&] { return fbq::load_hf_tokenizer_json(path); });
  return 0;
}
