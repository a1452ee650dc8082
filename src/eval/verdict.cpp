#include "eval/verdict.h"

#include <fmt/format.h>

#include <algorithm>

#include "eval/perplexity.h"
#include "io/text_files.h"
#include "model/model.h"
#include "util/error.h"

namespace fbq {

std::uintmax_t bytes_on_disk(const std::filesystem::path& path) {
  if (!std::filesystem::is_directory(path)) return std::filesystem::file_size(path);
  std::uintmax_t total = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(path))
    if (entry.is_regular_file()) total += entry.file_size();
  return total;
}

namespace {

nlohmann::json eval_comparison(const QuantizeOptions& options, const VerdictOptions& verdict) {
  LoadOptions load;
  if (options.tokenizer) load.tokenizer = *options.tokenizer;
  const auto original = load_model(options.model, load);
  const auto result = load_model(options.output);
  const auto text = read_paragraph_text(verdict.eval_text);
  const auto c = compare_perplexity(original, result, text, verdict.eval_text.string(),
                                    {.ctx = verdict.eval_ctx, .progress = options.progress});
  return {{"text", verdict.eval_text.string()}, {"ctx", verdict.eval_ctx}, {"windows", c.difference.windows},
          {"original_ppl", c.baseline.ppl}, {"result_ppl", c.candidate.ppl},
          {"ppl_difference", c.difference.ppl_difference},
          {"ppl_difference_stderr", c.difference.ppl_difference_stderr}};
}

}  // namespace

nlohmann::json quantize_verdict(const QuantizeOptions& options, const QuantizeSummary& summary,
                                const VerdictOptions& verdict) {
  nlohmann::json out = {{"output", options.output.string()},
                        {"method", options.method},
                        {"bits", options.method_options.spec.bits},
                        {"group_size", options.method_options.spec.group_size},
                        {"bits_per_weight", summary.bits_per_weight},
                        {"seconds", summary.seconds},
                        {"peak_rss_mib", summary.peak_rss_kib / 1024.0},
                        {"source_bytes", bytes_on_disk(options.model)},
                        {"output_bytes", bytes_on_disk(options.output)}};
  if (!verdict.preset.empty()) out["preset"] = verdict.preset;
  if (!verdict.skip_eval) out["eval"] = eval_comparison(options, verdict);
  write_file_atomically(options.output / "verdict.json", out.dump(2) + "\n");
  return out;
}

std::string format_verdict(const nlohmann::json& v) {
  const auto mib = [](const nlohmann::json& bytes) { return bytes.get<double>() / 1048576.0; };
  const std::string recipe = v.contains("preset") ? fmt::format("preset {}: {}", v["preset"].get<std::string>(),
                                                                v["method"].get<std::string>())
                                                  : v["method"].get<std::string>();
  std::string quality = "skipped (--no-eval)";
  if (v.contains("eval")) {
    const auto& e = v["eval"];
    quality = fmt::format("PPL {:.2f} -> {:.2f}, {:+.2f} ± {:.2f} (paired over {} windows of {} tokens of {})",
                          e["original_ppl"].get<double>(), e["result_ppl"].get<double>(),
                          e["ppl_difference"].get<double>(), e["ppl_difference_stderr"].get<double>(),
                          e["windows"].get<int>(), e["ctx"].get<int>(), e["text"].get<std::string>());
  }
  return fmt::format(
      "\n== verdict: {} ({}, W{} g{}) ==\n"
      "size     {:.2f} MiB -> {:.2f} MiB on disk ({:.2f}x smaller)\n"
      "weights  {:.3f} bits/weight over the quantized linears (branch and scales included)\n"
      "cost     {:.1f} s, peak memory {:.1f} MiB\n"
      "quality  {}\n",
      v["output"].get<std::string>(), recipe, v["bits"].get<int>(), v["group_size"].get<int>(), mib(v["source_bytes"]),
      mib(v["output_bytes"]), v["source_bytes"].get<double>() / std::max(v["output_bytes"].get<double>(), 1.0),
      v["bits_per_weight"].get<double>(), v["seconds"].get<double>(), v["peak_rss_mib"].get<double>(), quality);
}

}  // namespace fbq
