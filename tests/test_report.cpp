// The default recipe (preset w4 = FBQuant), the verdict it leaves in the output, `fbq report`'s page (every SVG
// well-formed XML, rendered by headless Chromium without console errors) and their bad inputs. Needs nothing
// from ../shared.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace fbq {
namespace {

// A small but real default run: the bundled model, bundled texts, preset w4 with fewer windows and steps.
std::filesystem::path quantize_default(const test::TempDir& tmp) {
  const auto model = test::bundled_model();
  const auto out = tmp.path() / "q";
  const auto command = fmt::format("'{}' quantize '{}' -o '{}' --nsamples 4 --val-samples 2 --seqlen 64 -O steps=20 "
                                   "--eval-ctx 128 --quiet --json >'{}' 2>/dev/null",
                                   FBQ_CLI_PATH, model.string(), out.string(), (tmp.path() / "verdict.txt").string());
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  return out;
}

TEST(QuantizeReport, DefaultPresetVerdictAndPage) {
  FBQ_REQUIRE_FILE(test::bundled_model() / "model.safetensors");
  const test::TempDir tmp;
  const auto out = quantize_default(tmp);
  const auto printed = nlohmann::json::parse(test::read_file(tmp.path() / "verdict.txt"));
  EXPECT_EQ(printed["preset"], "w4");
  EXPECT_EQ(printed["method"], "fbquant") << "no --method: the project's own method";
  EXPECT_NEAR(printed["bits_per_weight"].get<double>(), 4.39, 0.02) << "W4 g128 + 0.25-bit branch";
  EXPECT_EQ(nlohmann::json::parse(test::read_file(out / "verdict.json")), printed) << "the verdict is kept in the output";

  ASSERT_EQ(std::system(fmt::format("'{}' report '{}' 2>/dev/null", FBQ_CLI_PATH, out.string()).c_str()), 0);
  const auto html = test::read_file(out / "report.html");
  for (const auto* expected : {"<!DOCTYPE html>", "Verdict", "paired difference", "loss by step", "Bits per weight"})
    EXPECT_NE(html.find(expected), std::string::npos) << expected;
  EXPECT_EQ(html.find("<script"), std::string::npos) << "no script";
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg")) << "no network resource";
  // 3 bar charts + one loss chart per decoder layer; each SVG must be well-formed XML on its own.
  const auto script = tmp.path() / "check.py";
  test::write_file(script, "import re, sys, xml.etree.ElementTree as ET\n"
                           "html = open(sys.argv[1], encoding='utf-8').read()\n"
                           "svgs = re.findall(r'<svg.*?</svg>', html, re.S)\n"
                           "[ET.fromstring(s) for s in svgs]\n"
                           "print(len(svgs))\n");
  const auto count_file = tmp.path() / "count.txt";
  ASSERT_EQ(std::system(fmt::format("/usr/bin/python3 '{}' '{}' >'{}'", script.string(), (out / "report.html").string(),
                                    count_file.string()).c_str()), 0) << "an SVG is not well-formed XML";
  EXPECT_EQ(std::stoi(test::read_file(count_file)), 3 + 6) << "3 bar charts and a loss chart for each of the 6 layers";
}

// The page in a real browser: headless Chromium renders it (a screenshot of the whole page) and logs no
// console message (Chromium reports every malformed SVG attribute there).
TEST(QuantizeReport, ChromiumRendersWithoutConsoleErrors) {
  if (!std::filesystem::exists("/usr/bin/chromium")) GTEST_SKIP() << "no /usr/bin/chromium (scripts/setup.sh installs it)";
  FBQ_REQUIRE_FILE(test::bundled_model() / "model.safetensors");
  const test::TempDir tmp;
  const auto out = quantize_default(tmp);
  ASSERT_EQ(std::system(fmt::format("'{}' report '{}' -o '{}' 2>/dev/null", FBQ_CLI_PATH, out.string(),
                                    (tmp.path() / "page.html").string()).c_str()), 0);
  const auto shot = tmp.path() / "page.png", log = tmp.path() / "chromium.log";
  const auto command = fmt::format(
      "timeout 120 /usr/bin/chromium --headless --no-sandbox --disable-gpu --user-data-dir='{}' --enable-logging=stderr "
      "--v=0 --window-size=1100,6000 --screenshot='{}' 'file://{}' >/dev/null 2>'{}'",
      (tmp.path() / "profile").string(), shot.string(), (tmp.path() / "page.html").string(), log.string());
  ASSERT_EQ(std::system(command.c_str()), 0) << test::read_file(log);
  ASSERT_TRUE(std::filesystem::exists(shot)) << test::read_file(log);
  EXPECT_GT(std::filesystem::file_size(shot), 20000u) << "a blank page compresses to almost nothing";
  const auto messages = test::read_file(log);
  EXPECT_EQ(messages.find("CONSOLE"), std::string::npos) << messages;
}

TEST(QuantizeReport, BadInput) {
  FBQ_REQUIRE_FILE(test::bundled_model() / "model.safetensors");
  const test::TempDir tmp;
  const auto model = test::bundled_model().string();
  auto message = test::expect_cli_fails("quantize '" + model + "' -o '" + (tmp.path() / "x").string() + "' --preset w5",
                                        tmp.path());
  EXPECT_NE(message.find("unknown --preset 'w5' (known: w4, "), std::string::npos) << message;
  EXPECT_FALSE(std::filesystem::exists(tmp.path() / "x"));
  message = test::expect_cli_fails("report '" + model + "'", tmp.path());
  EXPECT_NE(message.find("not a quantized model"), std::string::npos) << message;
  EXPECT_FALSE(std::filesystem::exists(test::bundled_model() / "report.html"));
  message = test::expect_cli_fails("report '" + (tmp.path() / "missing").string() + "'", tmp.path());
  EXPECT_NE(message.find("not a quantized model"), std::string::npos) << message;
}

}  // namespace
}  // namespace fbq
