// libFuzzer harness for the text files fbquant reads: calibration and evaluation text (paragraphs, UTF-8
// checked), your own JSONL zero-shot task, a last-word task cut from a text, CSV.
#include "eval/tasks/task.h"
#include "fuzz_files.h"
#include "io/text_files.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = fbq::fuzz::write_input("fuzz_text", "input.txt", data, size);
  fbq::fuzz::refused_or_fine([&] { fbq::read_paragraph_text(path); });
  fbq::fuzz::refused_or_fine([&] { fbq::load_jsonl_task(path, 50); });
  fbq::fuzz::refused_or_fine([&] { fbq::load_last_word_task("last_word_fuzz", path, 50); });
  fbq::fuzz::refused_or_fine([&] { fbq::read_csv(path); });
  return 0;
}
