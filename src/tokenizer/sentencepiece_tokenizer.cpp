// SentencePiece `.model` back end: libsentencepiece does the encoding; pieces are decoded one at a time
// (rather than with sp.Decode) so that generation can stream text token by token.
#include <sentencepiece_processor.h>

#include <exception>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace fbq {
namespace {

constexpr std::string_view kWordBoundary = "\xE2\x96\x81";  // U+2581, SentencePiece's stand-in for ' '

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::filesystem::path& path) : path_(path.string()) {
    std::error_code error;
    if (!std::filesystem::is_regular_file(path, error))
      fail("{}: tokenizer file not found (or not a regular file)", path_);
    try {  // libsentencepiece also throws (Darts: a zero-length piece) instead of returning a status
      if (const auto status = processor_.Load(path_); !status.ok())
        fail("{}: not a SentencePiece model ({})", path_, status.ToString());
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail("{}: not a SentencePiece model ({})", path_, e.what());
    }
    for (int id = 0; id < processor_.GetPieceSize(); ++id)
      if (processor_.IsControl(id)) controls_.emplace_back(processor_.IdToPiece(id), id);
  }

  std::vector<int> tokenize(std::string_view text, const EncodeOptions& options) const override {
    return tokenize_with_controls(text, options, bos_id(), controls_, [&](std::string_view fragment, std::vector<int>& ids) {
      std::vector<int> encoded;
      if (const auto status = processor_.Encode(fragment, &encoded); !status.ok())
        fail("{}: SentencePiece could not encode the text ({})", path_, status.ToString());
      ids.insert(ids.end(), encoded.begin(), encoded.end());
    });
  }

  std::string decode_piece(int previous, int token) const override {
    if (token < 0 || token >= vocab_size())
      fail("{}: token id {} is outside the vocabulary (size {})", path_, token, vocab_size());
    // UNK has no surface text of its own; printing its piece ("<unk>") would invent text.
    if (processor_.IsControl(token) || processor_.IsUnknown(token)) return {};
    const std::string& piece = processor_.IdToPiece(token);
    if (processor_.IsByte(token)) {
      const auto byte = parse_byte_piece(piece);
      if (!byte) fail("{}: byte token {} is spelled '{}', not <0xAB>", path_, token, piece);
      return std::string(1, char(*byte));
    }

    std::string_view rest = piece;
    if (previous >= 0 && previous == bos_id() && rest.starts_with(kWordBoundary))
      rest.remove_prefix(kWordBoundary.size());  // the dummy prefix is not part of the text
    return word_boundaries_to_spaces(rest);
  }

  int vocab_size() const override { return processor_.GetPieceSize(); }
  int bos_id() const override { return processor_.bos_id(); }
  int eos_id() const override { return processor_.eos_id(); }

 private:
  std::string path_;
  sentencepiece::SentencePieceProcessor processor_;
  std::vector<std::pair<std::string, int>> controls_;  // <s>, </s>, [INST], ...
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& path) {
  return std::make_unique<SentencePieceTokenizer>(path);
}

}  // namespace fbq
