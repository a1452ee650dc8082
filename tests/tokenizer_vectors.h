#pragma once
// llama.cpp's tokenizer test vectors (`ggml-vocab-*.gguf.inp` / `.out`) and readable failure output.
// - The .inp generator writes every input followed by "\n__ggml_vocab_test__\n", so the inputs are exactly
//   the pieces between those whole separators, newlines included: an input may be empty ("") or newlines
//   only ("\n\n"), and the file ends with a separator.
// - The .out file has one line per input: " id id ..." (each id preceded by a space), an empty line for "".
// - The ids are Hugging Face `encode(text, add_special_tokens=False)`: no BOS, no EOS; llama.cpp's test
//   compares them with add_special = false, parse_special = false.
#include <gtest/gtest.h>

#include <filesystem>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace fbq::test {

// Control characters spelled out so that a failing case's input is readable in the log.
inline std::string escaped(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '"': out += "\\\""; break;
      default: out += c;
    }
  }
  return out + "\"";
}

inline std::string joined(const std::vector<int>& ids) {
  std::string out = "[";
  for (int id : ids) {
    if (out.size() > 1) out += ' ';
    out += std::to_string(id);
  }
  return out + "]";
}

inline std::vector<std::string> split_on(const std::string& text, const std::string& separator) {
  std::vector<std::string> pieces;
  size_t start = 0;
  for (size_t at; (at = text.find(separator, start)) != std::string::npos; start = at + separator.size())
    pieces.push_back(text.substr(start, at - start));
  EXPECT_EQ(start, text.size()) << "text after the last separator";
  return pieces;
}

struct VocabVectors {
  std::vector<std::string> inputs;
  std::vector<std::vector<int>> expected;
};

// `stem` is e.g. shared_dir() / "tokenizers/ggml-vocab-gpt-2.gguf"; reads stem.inp and stem.out.
inline VocabVectors read_vocab_vectors(const std::filesystem::path& stem) {
  VocabVectors v;
  v.inputs = split_on(read_file(stem.string() + ".inp"), "\n__ggml_vocab_test__\n");
  std::istringstream lines(read_file(stem.string() + ".out"));
  for (std::string line; std::getline(lines, line);) {
    std::istringstream ids(line);
    v.expected.emplace_back(std::istream_iterator<int>(ids), std::istream_iterator<int>());
  }
  EXPECT_EQ(v.inputs.size(), v.expected.size()) << "inputs vs lines of expected ids in " << stem;
  return v;
}

}  // namespace fbq::test
