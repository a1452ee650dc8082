// libFuzzer harness for the vocab.json + merges.txt reader. The input is both files: the vocabulary, a NUL
// byte, then the merges (no NUL: all of it is the vocabulary and the merges file is empty).
#include <algorithm>

#include "fuzz_tokenizer_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto* split = std::find(data, data + size, std::uint8_t{0});
  const auto vocab = fbq::fuzz::write_input("fuzz_vocab_merges", "vocab.json", data, split - data);
  const std::size_t rest = split == data + size ? 0 : data + size - split - 1;
  fbq::fuzz::write_input("fuzz_vocab_merges", "merges.txt", split + (rest ? 1 : 0), rest);
  fbq::fuzz::exercise([&] { return fbq::load_vocab_merges(vocab, "gpt2"); });
  return 0;
}
