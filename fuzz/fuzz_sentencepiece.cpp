// libFuzzer harness for SentencePiece .model files (protobuf, loaded by libsentencepiece).
#include "fuzz_tokenizer_support.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = fbq::fuzz::write_input("fuzz_sentencepiece", "tokenizer.model", data, size);
  fbq::fuzz::exercise([&] { return fbq::load_sentencepiece_tokenizer(path); });
  return 0;
}
