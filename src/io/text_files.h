#pragma once
// Reading the text formats benchmark data comes in: whole files (plain or bzip2), JSON Lines and CSV.
// Every failure is one fbq::Error line naming the file (and the line, where there is one).
#include <filesystem>
#include <functional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace fbq {

// The whole file; a `.bz2` file is decompressed. Throws when missing, unreadable, corrupt or empty.
std::string read_text_file(const std::filesystem::path& path);

// A whole JSON file. Throws when missing, unreadable or not valid JSON.
nlohmann::json read_json_file(const std::filesystem::path& path);

// Calls `each(object, line_number)` for every non-blank line of a JSON Lines file (1-based line numbers).
// A line that is not valid JSON is an error naming the file and line.
void for_each_json_line(const std::filesystem::path& path,
                        const std::function<void(const nlohmann::json&, int line)>& each);

// Writes `path` through a temporary file beside it, renamed into place only when every byte was written, so
// a failed write (full disk, bad directory) leaves no partial file under the name and no temporary behind.
void write_file_atomically(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write);
void write_file_atomically(const std::filesystem::path& path, std::string_view contents);

// RFC 4180 CSV: quoted fields may hold commas, doubled quotes and newlines. Rows in file order.
std::vector<std::vector<std::string>> read_csv(const std::filesystem::path& path);

// Python's str.strip() for ASCII whitespace.
std::string strip_whitespace(std::string_view text);

// The lines of a text file (without their "\n" / "\r\n").
std::vector<std::string> read_lines(const std::filesystem::path& path);

// The paragraphs of a text file: runs of non-blank lines (joined with "\n"), split at blank lines.
std::vector<std::string> read_paragraphs(const std::filesystem::path& path);

// The test text of a file: its paragraphs joined with "\n\n" (DESIGN §5). Throws when it has none.
std::string read_paragraph_text(const std::filesystem::path& path);

}  // namespace fbq
