#pragma once
// Shared helpers for the test suite: where reference data lives, skipping when it is absent, small
// file utilities and a minimal .npy reader for PyTorch reference outputs.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace fbq::test {

inline std::filesystem::path shared_dir() { return FBQ_SHARED_DIR; }
inline std::filesystem::path source_dir() { return FBQ_SOURCE_DIR; }
// The bundled default model (committed to the repository).
inline std::filesystem::path bundled_model() { return source_dir() / "models" / "ref-llama-12m"; }

// Skips the current test, visibly, when a reference file is missing (a fresh clone without ../shared).
#define FBQ_REQUIRE_FILE(path)                                                            \
  do {                                                                                    \
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "reference data not found: " << (path); \
  } while (0)

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

// A fresh empty directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("fbq_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  static int& counter() {
    static int value = 0;
    return value;
  }
  std::filesystem::path path_;
};

// `fbq inspect FILE` must fail cleanly: exactly one "fbq: error: ..." line on stderr and exit status 1.
// `scratch_dir` receives the captured stderr.
// Runs `fbq ARGUMENTS` (already shell-quoted) and expects the CLI's failure contract: exit status 1 and
// exactly one "fbq: error: ..." line on stderr, which is returned.
inline std::string expect_cli_fails(const std::string& arguments, const std::filesystem::path& scratch_dir) {
  const auto err = scratch_dir / "stderr.txt";
  const auto command = std::string("'") + FBQ_CLI_PATH + "' " + arguments + " >/dev/null 2>'" + err.string() + "'";
  const int status = std::system(command.c_str());
  EXPECT_TRUE(WIFEXITED(status)) << "the CLI crashed: " << arguments;
  EXPECT_EQ(WEXITSTATUS(status), 1) << arguments;
  const auto message = read_file(err);
  EXPECT_EQ(message.rfind("fbq: error: ", 0), 0u) << message;
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 1) << message;
  return message;
}

inline void expect_inspect_fails(const std::filesystem::path& file, const std::filesystem::path& scratch_dir) {
  expect_cli_fails("inspect '" + file.string() + "'", scratch_dir);
}

// Runs tests/oracle/SCRIPT into a fresh directory once per test binary (importing torch takes seconds) and
// returns it, or null when PyTorch is missing.
inline const TempDir* oracle_output(const std::string& script) {
  static std::map<std::string, std::unique_ptr<TempDir>> outputs;
  if (auto found = outputs.find(script); found != outputs.end()) return found->second.get();
  auto& out = outputs[script];
  if (std::system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0) return nullptr;
  out = std::make_unique<TempDir>();
  const auto path = source_dir() / "tests" / "oracle" / script;
  const int status =
      std::system(("/usr/bin/python3 '" + path.string() + "' '" + out->path().string() + "' >/dev/null").c_str());
  EXPECT_EQ(status, 0) << script;
  return out.get();
}

template <typename T>
struct NpyArray {
  std::vector<std::int64_t> shape;
  std::vector<T> values;
};

// Reads a little-endian, C-order .npy of `descr` ("<f4", "<i4", "<i8").
template <typename T>
NpyArray<T> read_npy(const std::filesystem::path& path, const std::string& descr) {
  const auto bytes = read_file(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw std::runtime_error("not a .npy file");
  const int major = static_cast<unsigned char>(bytes[6]);
  std::size_t header_len, header_start;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    header_start = 10;
  } else {
    std::uint32_t len;
    std::memcpy(&len, bytes.data() + 8, 4);
    header_len = len;
    header_start = 12;
  }
  const auto header = bytes.substr(header_start, header_len);
  if (header.find("'descr': '" + descr + "'") == std::string::npos) throw std::runtime_error("unexpected dtype: " + header);
  if (header.find("'fortran_order': False") == std::string::npos) throw std::runtime_error("fortran order");
  NpyArray<T> array;
  std::smatch match;
  std::regex_search(header, match, std::regex(R"(\(([^)]*)\))"));
  std::stringstream dims(match[1].str());
  std::string dim;
  std::int64_t count = 1;
  while (std::getline(dims, dim, ','))
    if (dim.find_first_not_of(' ') != std::string::npos) {
      array.shape.push_back(std::stoll(dim));
      count *= array.shape.back();
    }
  array.values.resize(static_cast<std::size_t>(count));
  const std::size_t data_start = header_start + header_len;
  if (bytes.size() < data_start + count * sizeof(T)) throw std::runtime_error("truncated .npy");
  std::memcpy(array.values.data(), bytes.data() + data_start, count * sizeof(T));
  return array;
}

}  // namespace fbq::test
