// The README's quick start, run as a new user would: the repository cloned into a temporary directory with
// no ../shared beside it, then the quick-start lines in the clone. The first two lines (setup, test) are
// what CI itself runs from a clean clone (.ci/run), so here they are only checked to be there; the clone's
// build/ is this suite's own build tree (building again would double the suite's time).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fmt/format.h>
#include <sstream>

#include "test_support.h"

namespace fbq {
namespace {

// The commands of the README's quick-start block (between "<!-- quick start -->" and the end of its sh block).
std::vector<std::string> quick_start_lines(const std::string& readme) {
  const auto marker = readme.find("<!-- quick start -->");
  EXPECT_NE(marker, std::string::npos) << "README.md has no <!-- quick start --> block";
  if (marker == std::string::npos) return {};
  const auto begin = readme.find("```sh\n", marker) + 6;
  std::istringstream block(readme.substr(begin, readme.find("```", begin) - begin));
  std::vector<std::string> lines;
  for (std::string line; std::getline(block, line);) {
    const auto comment = line.find(" #");
    line = line.substr(0, comment);
    line.erase(line.find_last_not_of(' ') + 1);
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

TEST(QuickStart, ReadmeHasFiveLinesSetupAndTestFirst) {
  const auto lines = quick_start_lines(test::read_file(test::source_dir() / "README.md"));
  ASSERT_EQ(lines.size(), 5u) << "setup, test, quantize, evaluate, report";
  EXPECT_EQ(lines[0], "scripts/setup.sh");
  EXPECT_EQ(lines[1], "scripts/test.sh");
  EXPECT_NE(test::read_file(test::source_dir() / ".ci/run").find("scripts/setup.sh\nscripts/test.sh\n"), std::string::npos)
      << ".ci/run runs exactly the README's setup and test lines";
}

TEST(QuickStart, RunsInAFreshCloneWithoutShared) {
  if (std::system(fmt::format("git -C '{}' rev-parse --git-dir >/dev/null 2>&1", test::source_dir().string()).c_str()))
    GTEST_SKIP() << "the source tree is not a git checkout: nothing to clone";
  const test::TempDir tmp;
  const auto clone = tmp.path() / "fbquant";
  ASSERT_EQ(std::system(fmt::format("git clone -q '{}' '{}'", test::source_dir().string(), clone.string()).c_str()), 0);
  ASSERT_FALSE(std::filesystem::exists(clone.parent_path() / "shared")) << "the clone must have no ../shared";
  const auto build_dir = std::filesystem::path(FBQ_CLI_PATH).parent_path();
  std::filesystem::create_directory_symlink(build_dir, clone / "build");

  const auto lines = quick_start_lines(test::read_file(clone / "README.md"));
  ASSERT_EQ(lines.size(), 5u);
  for (size_t i = 2; i < lines.size(); ++i) {
    const auto log = tmp.path() / fmt::format("line{}.log", i + 1);
    const auto command = fmt::format("cd '{}' && {} >'{}' 2>&1", clone.string(), lines[i], log.string());
    EXPECT_EQ(std::system(command.c_str()), 0) << lines[i] << "\n" << test::read_file(log);
  }
  // What the lines promise: a quantized model with its verdict, an evaluation, a page to look at.
  const auto quantized = clone / "q4";
  EXPECT_TRUE(std::filesystem::exists(quantized / "verdict.json"));
  EXPECT_NE(test::read_file(tmp.path() / "line3.log").find("== verdict"), std::string::npos);
  EXPECT_NE(test::read_file(tmp.path() / "line4.log").find("±"), std::string::npos) << "a paired difference";
  EXPECT_TRUE(std::filesystem::exists(quantized / "report.html"));
}

}  // namespace
}  // namespace fbq
