// libFuzzer harness for the zero-shot task files in lm-evaluation-harness's formats (../shared/data/zeroshot:
// ARC, PIQA, HellaSwag (bzip2), WinoGrande, BoolQ, OpenBookQA, LAMBADA JSONL, an MMLU subject's CSV). The input is
// written as every task's file; each loader must load or refuse with fbq::Error.
#include "eval/tasks/task.h"
#include "fuzz_files.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto root = fbq::fuzz::scratch_dir("fuzz_zeroshot") / "zeroshot";
  static const char* const kFiles[] = {
      "arc_easy/ARC-Easy-Test.jsonl", "arc_challenge/ARC-Challenge-Test.jsonl", "piqa/valid.jsonl",
      "piqa/valid-labels.lst", "hellaswag/hellaswag_val_full.txt.bz2", "winogrande/dev.jsonl", "boolq/val.jsonl",
      "openbookqa/test.jsonl", "lambada_openai/lambada_test.jsonl", "mmlu/test/anatomy_test.csv"};
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (const char* file : kFiles) {
    std::filesystem::create_directories((root / file).parent_path());
    fbq::fuzz::write_bytes(root / file, bytes);
  }
  const fbq::TaskSources sources{.data_dir = root, .text_dir = root, .limit = 50};
  for (const auto& name : fbq::builtin_task_names())
    fbq::fuzz::refused_or_fine([&] {
      if (name == "mmlu")
        fbq::load_mmlu(sources, "anatomy");
      else
        fbq::load_builtin_task(name, sources);
    });
  return 0;
}
