#pragma once
// Shared by the tokenizer harnesses: the input goes to a file of the name the loader expects (in a
// per-process directory under /dev/shm), and a loaded tokenizer must encode and decode a fixed text.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "tokenizer/bpe.h"
#include "util/error.h"

namespace fbq::fuzz {

inline std::filesystem::path write_input(const std::string& harness, const std::string& name, const std::uint8_t* data,
                                         std::size_t size) {
  const auto dir = std::filesystem::path("/dev/shm") / (harness + "_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / name;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), size);
  return path;
}

template <typename Load>
void exercise(Load load) {
  try {
    const auto tokenizer = load();
    const std::string text = "Hello world, 123 ½ 日本語 <|endoftext|> \xF0\x9F\xA6\x99\xFF\n\n  x";
    for (const bool special : {false, true}) {
      const auto ids = tokenizer->tokenize(text, {.add_bos = true, .parse_special = special});
      for (const int id : ids)
        if (id < 0 || id >= tokenizer->vocab_size()) __builtin_trap();  // an id outside the vocabulary
      tokenizer->decode(ids);
    }
  } catch (const fbq::Error&) {
  }
}

}  // namespace fbq::fuzz
