#pragma once
// A tokenizer file as llama.cpp's GGUF metadata (`tokenizer.ggml.*`), so an exported GGUF carries its own
// vocabulary: SentencePiece `.model` files become a `llama` vocabulary (pieces, scores, token types, the
// special ids), byte-level BPE (tokenizer.json, vocab.json + merges.txt) a `gpt2` one (tokens, merges, the
// pre-tokenizer's llama.cpp name), and a GGUF's vocabulary (e.g. a packed model's tokenizer.gguf) is copied.
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"

namespace fbq {

using GgufMetadata = std::vector<std::pair<std::string, GgufValue>>;

// Throws fbq::Error for forms it cannot write (llama2.c tokenizer.bin, tiktoken, SentencePiece-style BPE JSON).
GgufMetadata gguf_vocabulary(const std::filesystem::path& tokenizer_file);

}  // namespace fbq
