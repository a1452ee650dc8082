#include "io/text_files.h"

#include <bzlib.h>

#include <fstream>
#include <sstream>

#include "util/error.h"
#include "util/utf8.h"

namespace fbq {
namespace {

std::string read_bytes(const std::filesystem::path& path) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) fail("{}: file not found", path.string());
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (!in && !in.eof()) fail("{}: cannot read the file", path.string());
  return bytes.str();
}

std::string decompress_bz2(const std::string& compressed, const std::filesystem::path& path) {
  bz_stream stream{};
  if (BZ2_bzDecompressInit(&stream, 0, 0) != BZ_OK) fail("{}: cannot start bzip2 decompression", path.string());
  std::string out;
  std::vector<char> buffer(1 << 20);
  stream.next_in = const_cast<char*>(compressed.data());
  stream.avail_in = static_cast<unsigned>(compressed.size());
  int status = BZ_OK;
  while (status == BZ_OK) {
    stream.next_out = buffer.data();
    stream.avail_out = static_cast<unsigned>(buffer.size());
    status = BZ2_bzDecompress(&stream);
    out.append(buffer.data(), buffer.size() - stream.avail_out);
    if (status == BZ_OK && stream.avail_in == 0 && stream.avail_out != 0) break;  // input ended mid-stream
  }
  BZ2_bzDecompressEnd(&stream);
  if (status != BZ_STREAM_END) fail("{}: corrupt or truncated bzip2 data", path.string());
  return out;
}

}  // namespace

std::string strip_whitespace(std::string_view text) {
  constexpr std::string_view kWhitespace = " \t\n\r\v\f";
  const auto begin = text.find_first_not_of(kWhitespace);
  if (begin == std::string_view::npos) return "";
  return std::string(text.substr(begin, text.find_last_not_of(kWhitespace) - begin + 1));
}

void write_file_atomically(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write) {
  auto temp = path;
  temp += ".tmp";
  {
    std::ofstream out(temp, std::ios::binary);
    if (out) write(out);
    if (out) out.flush();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(temp, ignored);
      fail("cannot write {}", path.string());
    }
  }
  std::error_code error;
  std::filesystem::rename(temp, path, error);
  if (error) {
    std::filesystem::remove(temp, error);
    fail("cannot write {}: {}", path.string(), error.message());
  }
}

void write_file_atomically(const std::filesystem::path& path, std::string_view contents) {
  write_file_atomically(path, [&](std::ostream& out) { out.write(contents.data(), static_cast<std::streamsize>(contents.size())); });
}

std::string read_text_file(const std::filesystem::path& path) {
  auto bytes = read_bytes(path);
  if (path.extension() == ".bz2") bytes = decompress_bz2(bytes, path);
  if (bytes.empty()) fail("{}: the file is empty", path.string());
  return bytes;
}

nlohmann::json read_json_file(const std::filesystem::path& path) {
  const std::string text = read_text_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& error) {
    fail("{}: not valid JSON ({})", path.string(), error.what());
  }
}

std::vector<std::string> read_lines(const std::filesystem::path& path) {
  const auto text = read_text_file(path);
  std::vector<std::string> lines;
  std::size_t begin = 0;
  while (begin < text.size()) {
    std::size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(begin, end - begin);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    // Tokenizers take any bytes, but a Latin-1 or UTF-16 file would be calibrated on or scored as garbage.
    if (const auto bad = first_invalid_utf8(line); bad != std::string::npos)
      fail("{}:{}: not UTF-8 text (byte 0x{:02X} at column {}); convert the file first, e.g. iconv -t UTF-8",
           path.string(), lines.size() + 1, static_cast<unsigned char>(line[bad]), bad + 1);
    lines.push_back(std::move(line));
    begin = end + 1;
  }
  return lines;
}

void for_each_json_line(const std::filesystem::path& path,
                        const std::function<void(const nlohmann::json&, int line)>& each) {
  const auto lines = read_lines(path);
  int objects = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find_first_not_of(" \t") == std::string::npos) continue;
    nlohmann::json object;
    try {
      object = nlohmann::json::parse(lines[i]);
    } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for numbers beyond double
      fail("{}:{}: malformed JSON ({})", path.string(), i + 1, e.what());
    }
    each(object, static_cast<int>(i + 1));
    ++objects;
  }
  if (objects == 0) fail("{}: no JSON lines in the file", path.string());
}

std::vector<std::vector<std::string>> read_csv(const std::filesystem::path& path) {
  const auto text = read_text_file(path);
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, field_started = false;
  int line = 1;
  const auto end_field = [&] {
    row.push_back(std::move(field));
    field.clear();
    field_started = false;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (quoted) {
      if (ch == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (ch == '"') {
        quoted = false;
      } else {
        if (ch == '\n') ++line;
        field += ch;
      }
    } else if (ch == '"' && !field_started) {
      quoted = field_started = true;
    } else if (ch == ',') {
      end_field();
    } else if (ch == '\n' || ch == '\r') {
      if (ch == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      end_field();
      rows.push_back(std::move(row));
      row.clear();
      ++line;
    } else {
      field += ch;
      field_started = true;
    }
  }
  if (quoted) fail("{}:{}: unterminated quoted CSV field", path.string(), line);
  if (field_started || !row.empty()) {
    end_field();
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<std::string> read_paragraphs(const std::filesystem::path& path) {
  std::vector<std::string> paragraphs;
  std::string paragraph;
  for (const auto& line : read_lines(path)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      if (!paragraph.empty()) paragraphs.push_back(std::move(paragraph));
      paragraph.clear();
    } else {
      if (!paragraph.empty()) paragraph += '\n';
      paragraph += line;
    }
  }
  if (!paragraph.empty()) paragraphs.push_back(std::move(paragraph));
  return paragraphs;
}

std::string read_paragraph_text(const std::filesystem::path& path) {
  std::string text;
  for (const auto& paragraph : read_paragraphs(path)) {
    if (!text.empty()) text += "\n\n";
    text += paragraph;
  }
  if (text.empty()) fail("{}: no text found", path.string());
  return text;
}

}  // namespace fbq
