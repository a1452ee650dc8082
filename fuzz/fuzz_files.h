#pragma once
// Shared by the harnesses: the fuzz input becomes a file (or a directory of files) of the names a loader
// expects, in a per-process directory under /dev/shm (loaders take paths; memory is faster than disk).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "util/error.h"

namespace fbq::fuzz {

inline std::filesystem::path scratch_dir(const std::string& harness) {
  const auto dir = std::filesystem::path("/dev/shm") / (harness + "_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return dir;
}

inline void write_bytes(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::filesystem::path write_input(const std::string& harness, const std::string& name, const std::uint8_t* data,
                                         std::size_t size) {
  const auto path = scratch_dir(harness) / name;
  write_bytes(path, {reinterpret_cast<const char*>(data), size});
  return path;
}

// A bundle is several files in one input, each a line "@@ NAME" followed by its bytes up to the next
// "\n@@ " (fuzz/make_seeds.py writes them). Names are plain file names; others are skipped. Returns a fresh
// directory holding exactly the bundle's files.
inline std::filesystem::path write_bundle(const std::string& harness, const std::uint8_t* data, std::size_t size) {
  const auto dir = scratch_dir(harness) / "model";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directory(dir);
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  for (std::size_t at = input.starts_with("@@ ") ? 0 : input.find("\n@@ "); at != std::string_view::npos;) {
    at += input[at] == '\n' ? 4 : 3;
    const auto name_end = input.find('\n', at);
    if (name_end == std::string_view::npos) break;
    const auto name = input.substr(at, name_end - at);
    const auto next = input.find("\n@@ ", name_end);
    const auto body = input.substr(name_end + 1, next == std::string_view::npos ? std::string_view::npos : next - name_end - 1);
    if (!name.empty() && name.size() < 64 && name.find('/') == std::string_view::npos && name != "." && name != "..")
      write_bytes(dir / std::string(name), body);
    at = next;
  }
  return dir;
}

// Runs one loader step: success and a refusal (fbq::Error) are both fine; anything else escapes to libFuzzer.
template <typename Step>
void refused_or_fine(Step step) {
  try {
    step();
  } catch (const fbq::Error&) {
  }
}

}  // namespace fbq::fuzz
