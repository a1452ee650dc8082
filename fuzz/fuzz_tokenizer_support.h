#pragma once
// Shared by the tokenizer harnesses: a loaded tokenizer must encode and decode a fixed text.
#include <string>

#include "fuzz_files.h"
#include "tokenizer/bpe.h"

namespace fbq::fuzz {

template <typename Load>
void exercise(Load load) {
  refused_or_fine([&] {
    const auto tokenizer = load();
    const std::string text = "Hello world, 123 ½ 日本語 <|endoftext|> \xF0\x9F\xA6\x99\xFF\n\n  x";
    for (const bool special : {false, true}) {
      const auto ids = tokenizer->tokenize(text, {.add_bos = true, .parse_special = special});
      for (const int id : ids)
        if (id < 0 || id >= tokenizer->vocab_size()) __builtin_trap();  // an id outside the vocabulary
      tokenizer->decode(ids);
    }
  });
}

}  // namespace fbq::fuzz
