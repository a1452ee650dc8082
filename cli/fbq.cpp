// fbq: the command-line front end of libfbquant. Each subcommand parses options, calls the library and
// prints; every failure is one "fbq: error: ..." line on stderr and exit status 1.
#include <CLI/CLI.hpp>
#include <cblas.h>
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <omp.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "eval/chat.h"
#include "eval/generate.h"
#include "eval/kernel_bench.h"
#include "eval/checkpoint_bench.h"
#include "eval/method_bench.h"
#include "eval/perplexity.h"
#include "eval/speed.h"
#include "eval/tasks/task.h"
#include "eval/verdict.h"
#include "eval/zeroshot.h"
#include "eval/zeroshot_report.h"
#include "export/gguf_export.h"
#include "export/gptq_export.h"
#include "io/gguf.h"
#include "io/text_files.h"
#include "kernels/gemv_int8.h"
#include "kernels/gemv_packed.h"
#include "model/model.h"
#include "model/synthetic_model.h"
#include "quant/presets.h"
#include "quant/quantize_model.h"
#include "report/html_report.h"
#include "report/svg_chart.h"
#include "util/error.h"
#include "util/memory_usage.h"
#include "util/progress.h"

namespace {

using fbq::Model;

// Every --json report carries the process's peak resident memory (scripts/scale.sh reads it): the one it
// already holds (the quantize verdict, as saved in verdict.json), else the peak so far.
void print_json(nlohmann::json out) {
  if (!out.contains("peak_rss_mib")) out["peak_rss_mib"] = fbq::peak_rss_mib();
  fmt::print("{}\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

struct ModelArgs {
  std::string path;
  std::string tokenizer;
  bool require_tokenizer = true;

  void add_to(CLI::App& command) {
    command.add_option("MODEL", path, "Hugging Face model directory, llama2.c .bin checkpoint or .gguf file")->required();
    command.add_option("--tokenizer", tokenizer,
                       "tokenizer file (tokenizer.json, vocab.json, tokenizer.model, .gguf or llama2.c tokenizer.bin)");
  }
  Model load() const {
    fbq::LoadOptions options;
    if (!tokenizer.empty()) options.tokenizer = tokenizer;
    options.require_tokenizer = require_tokenizer;
    const auto start = std::chrono::steady_clock::now();
    auto model = fbq::load_model(path, options);
    fmt::print(stderr, "loaded {} ({} model, {} layers, dim {}, vocab {}) in {:.2f}s\n", path, model.format,
               model.config.n_layers, model.config.dim, model.config.vocab_size, fbq::seconds_since(start));
    return model;
  }
};

void run_perplexity(const ModelArgs& model_args, const std::string& text_path, const fbq::PerplexityOptions& options,
                    const std::string& nll_out, bool as_json) {
  const auto text = fbq::read_paragraph_text(text_path);  // a bad text fails before a long model load
  const auto model = model_args.load();
  const auto tokens = model.tokenizer->encode(text, /*add_bos=*/true);
  const auto result = fbq::evaluate_perplexity(model, tokens, options);
  if (!nll_out.empty()) fbq::write_token_nll(nll_out, result.token_nll);
  if (as_json) {
    const nlohmann::json out = {{"model", model_args.path}, {"text", text_path},  {"ctx", options.ctx}, {"decode", options.decode},
                                {"ppl", result.ppl},         {"ppl_stderr", result.ppl_stderr},
                                {"tokens", result.tokens},   {"windows", result.windows},
                                {"seconds", result.seconds}, {"mean_nll", result.mean_nll}};
    print_json(out);
  } else {
    fmt::print("PPL {:.4f} ± {:.4f}  ({} tokens scored in {} windows of {}, {:.2f}s, {:.0f} tokens/s)\n", result.ppl,
               result.ppl_stderr, result.tokens, result.windows, options.ctx, result.seconds,
               result.tokens / result.seconds);
  }
}

void run_compare(const ModelArgs& baseline_args, const ModelArgs& candidate_args, const std::string& text_path,
                 const fbq::PerplexityOptions& options, bool as_json) {
  const auto text = fbq::read_paragraph_text(text_path);
  const auto baseline_model = baseline_args.load();
  const auto candidate_model = candidate_args.load();  // both load before either is scored: errors come first
  const auto [baseline, candidate, d] = fbq::compare_perplexity(baseline_model, candidate_model, text, text_path, options);
  if (as_json) {
    const nlohmann::json out = {{"baseline", baseline_args.path},   {"candidate", candidate_args.path},
                                {"text", text_path},                {"ctx", options.ctx},
                                {"windows", d.windows},             {"tokens", baseline.tokens},
                                {"baseline_ppl", baseline.ppl},     {"candidate_ppl", candidate.ppl},
                                {"ppl_difference", d.ppl_difference}, {"ppl_difference_stderr", d.ppl_difference_stderr},
                                {"nll_difference", d.nll_difference}, {"nll_difference_stderr", d.nll_difference_stderr}};
    print_json(out);
  } else {
    fmt::print("baseline  {}: PPL {:.4f} ± {:.4f}\ncandidate {}: PPL {:.4f} ± {:.4f}\n", baseline_args.path, baseline.ppl,
               baseline.ppl_stderr, candidate_args.path, candidate.ppl, candidate.ppl_stderr);
    fmt::print("candidate − baseline: {:+.4f} ± {:.4f} PPL (paired over {} windows of {} tokens; {:.1f} standard errors)\n",
               d.ppl_difference, d.ppl_difference_stderr, d.windows, options.ctx,
               d.ppl_difference_stderr > 0 ? d.ppl_difference / d.ppl_difference_stderr : 0.0);
  }
}

std::string sampling_line(const fbq::GenerateOptions& options) {
  return fmt::format("sampling: {} (seed {})",
                     options.temperature == 0.0f ? std::string("greedy")
                                                 : fmt::format("temperature {}, top-p {}", options.temperature, options.top_p),
                     options.seed);
}

void run_generate(const ModelArgs& model_args, const std::string& prompt, const fbq::GenerateOptions& options,
                  bool as_json) {
  const auto model = model_args.load();
  fmt::print(stderr, "{}\n", sampling_line(options));
  const auto stream = [](const std::string& piece) {
    fmt::print("{}", piece);
    std::fflush(stdout);
  };
  const auto result = as_json ? fbq::generate(model, prompt, options) : fbq::generate(model, prompt, options, stream);
  const auto prompt_tokens = result.prompt_tokens.size();
  const double prefill_rate = prompt_tokens / std::max(result.prefill_seconds, 1e-9);
  const double decode_rate = result.decode_steps / std::max(result.decode_seconds, 1e-9);
  if (as_json) {
    print_json({{"model", model_args.path}, {"text", result.text}, {"prompt_tokens", prompt_tokens},
                {"generated_tokens", result.generated.size()}, {"prefill_seconds", result.prefill_seconds},
                {"prefill_tokens_per_second", prefill_rate}, {"decode_steps", result.decode_steps},
                {"decode_seconds", result.decode_seconds}, {"decode_tokens_per_second", decode_rate},
                {"threads", omp_get_max_threads()}, {"prompt_ids", result.prompt_tokens},
                {"generated_ids", result.generated}});
    return;
  }
  fmt::print("\n");
  fmt::print(stderr, "prefill: {} tokens in {:.3f}s ({:.1f} tokens/s)\n", prompt_tokens, result.prefill_seconds, prefill_rate);
  fmt::print(stderr, "decode: {} tokens in {:.3f}s ({:.1f} tokens/s), peak memory {:.0f} MiB\n", result.decode_steps,
             result.decode_seconds, decode_rate, fbq::peak_rss_mib());
}

// The user's lines from stdin, the replies on stdout; the "> " prompt (on stderr) only for a terminal.
void chat_on_stdin(const ModelArgs& model_args, const std::string& template_name, const fbq::ChatOptions& options) {
  const auto chat_template = fbq::load_chat_template(model_args.path, template_name);  // before the model loads
  const auto model = model_args.load();
  fbq::ChatSession chat(model, chat_template, options);
  fmt::print(stderr, "chat template {}, context {} tokens, {}; end with Ctrl-D\n", fbq::chat_family_name(chat_template.family),
             chat.context(), sampling_line(options.generation));
  const bool terminal = isatty(STDIN_FILENO);
  if (fbq::run_chat(chat, std::cin, std::cout, terminal ? &std::cerr : nullptr) == fbq::ChatEnd::context_full)
    fmt::print(stderr, "chat: the conversation has filled the context of {} tokens; ending\n", chat.context());
}

std::string rope_scaling_text(const fbq::RopeScaling& s) {
  using Type = fbq::RopeScaling::Type;
  if (s.type == Type::linear) return fmt::format("RoPE scaling linear ×{}", s.factor);
  if (s.type == Type::llama3)
    return fmt::format("RoPE scaling llama3 ×{} (low {}, high {}, original {} positions)", s.factor, s.low_freq_factor,
                       s.high_freq_factor, s.original_max_positions);
  return "no RoPE scaling";
}

void run_inspect(const ModelArgs& model_args) {
  if (fbq::is_gguf_file(model_args.path)) {  // the file as it is: metadata and raw tensors
    fmt::print("{}", fbq::describe_gguf(fbq::GgufFile(model_args.path)));
    return;
  }
  const auto model = model_args.load();
  const auto& c = model.config;
  fmt::print("model:      {} ({})\n", model.source.string(), model.format);
  fmt::print("layers {}, dim {}, hidden {}, heads {} (kv {}), head_dim {}, vocab {}, max_seq_len {}\n", c.n_layers,
             c.dim, c.hidden_dim, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size, c.max_seq_len);
  fmt::print("rms_eps {}, rope_theta {}, tied embeddings: {}, bos {}, eos {}\n", c.rms_eps, c.rope_theta,
             c.tie_embeddings ? "yes" : "no", c.bos_id, c.eos_id);
  fmt::print("architecture {}, {}, biases: {}, {}\n", c.model_type, rope_scaling_text(c.rope_scaling),
             c.o_bias ? "q/k/v/o" : c.qkv_bias ? "q/k/v" : "none",
             c.sliding_window > 0 ? fmt::format("sliding window {}", c.sliding_window) : "full attention");
  fmt::print("output head: {}\n", c.tie_embeddings ? "the embedding table (tied)" : model.lm_head->describe());
  if (model.tokenizer) fmt::print("tokenizer:  {} tokens\n", model.tokenizer->vocab_size());
  std::size_t file_bytes = 0, parameters = 0;
  fmt::print("\n{:<52} {:>6} {:>16} {:>12}\n", "tensor", "dtype", "shape", "bytes");
  for (const auto& tensor : model.source_tensors) {
    fmt::print("{:<52} {:>6} {:>16} {:>12}\n", tensor.name, tensor.dtype, fmt::format("{}", fmt::join(tensor.shape, "x")),
               tensor.bytes);
    file_bytes += tensor.bytes;
    std::size_t count = 1;
    for (const auto dim : tensor.shape) count *= static_cast<std::size_t>(dim);
    parameters += count;
  }
  fmt::print("\n{} tensors, {:.2f}M parameters, {:.2f} MiB in the file, {:.2f} MiB of weights held in memory\n",
             model.source_tensors.size(), parameters / 1e6, file_bytes / 1048576.0, model.weight_bytes() / 1048576.0);
}

void print_gptq_export(const fbq::GptqExportOptions& options, const fbq::GptqExportSummary& s, bool as_json) {
  if (as_json) {
    print_json({{"to", "gptq"}, {"output", options.output}, {"checkpoint_format", fbq::checkpoint_format_name(s.format)},
                {"bits", s.bits}, {"group_size", s.group_size}, {"sym", s.sym}, {"desc_act", s.desc_act},
                {"linears", s.linears}, {"bits_per_weight", s.bits_per_weight}, {"model_bytes", s.model_bytes},
                {"branch_rank", s.branch_rank}, {"adapter_bytes", s.adapter_bytes},
                {"float_values", s.float_values}, {"float_values_changed", s.float_values_changed},
                {"warnings", s.warnings}});
    return;
  }
  fmt::print("wrote {}: GPTQ checkpoint_format {} ({}), int{} group {}, {}{}\n", options.output.string(),
             fbq::checkpoint_format_name(s.format), s.format == fbq::GptqZeroFormat::v1 ? "stores z - 1" : "stores z",
             s.bits, s.group_size > 0 ? s.group_size : -1, s.sym ? "sym" : "asymmetric", s.desc_act ? ", desc_act" : "");
  fmt::print("{} linears at {:.4f} bits/weight as GPTQ stores them (qweight + qzeros + f16 scales + g_idx); "
             "model.safetensors {:.2f} MiB\n", s.linears, s.bits_per_weight, s.model_bytes / 1048576.0);
  if (s.branch_rank > 0)
    fmt::print("branch: PEFT LoRA adapter in {}/branch, rank {} (every module zero-padded to it, lora_alpha = r, "
               "scaling 1) on {}; adapter_model.safetensors {:.2f} MiB\n", options.output.string(), s.branch_rank,
               fmt::join(s.branch_modules, ", "), s.adapter_bytes / 1048576.0);
  fmt::print("float tensors ({} -> F16): {}\n", fmt::join(s.source_float_dtypes, "/"),
             s.float_values_changed == 0
                 ? fmt::format("all {} values exact", s.float_values)
                 : fmt::format("{} of {} values changed by rounding to f16", s.float_values_changed, s.float_values));
  for (const auto& warning : s.warnings) fmt::print("note: {}\n", warning);
  fmt::print("load it with:\n");
  for (const auto& line : s.serving) fmt::print("  {}\n", line);
}

void list_synthetic_shapes() {
  for (const auto& shape : fbq::synthetic_shapes()) {
    const auto& c = shape.config;
    fmt::print("{:<15} {:<7} dim {:>5}, hidden {:>5}, {:>2} layers, heads {:>2}/{:<2} vocab {:>6}{}{}\n", shape.name,
               c.model_type, c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size,
               c.tie_embeddings ? ", tied" : "", c.qkv_bias ? ", q/k/v biases" : "");
  }
}

void run_synth(fbq::SynthOptions options, const std::string& dtype, const std::string& tokenizer, bool list, bool quiet) {
  if (list) return list_synthetic_shapes();
  if (options.shape.empty() || options.output.empty()) fbq::fail("synth: needs --shape and -o DIR (shapes: --list-shapes)");
  const std::map<std::string, fbq::DType> dtypes = {{"bf16", fbq::DType::BF16}, {"f16", fbq::DType::F16}, {"f32", fbq::DType::F32}};
  if (!dtypes.contains(dtype)) fbq::fail("synth: --dtype must be bf16, f16 or f32 (got '{}')", dtype);
  options.dtype = dtypes.at(dtype);
  if (!tokenizer.empty()) options.tokenizer = tokenizer;
  options.progress = !quiet;
  const auto start = std::chrono::steady_clock::now();
  fbq::write_synthetic_model(options);
  fmt::print(stderr, "wrote {} ({} {}, seed {}) in {:.1f}s\n", options.output.string(), options.shape, dtype, options.seed,
             fbq::seconds_since(start));
}

void run_quantize(const fbq::QuantizeOptions& options, const fbq::VerdictOptions& verdict, bool as_json) {
  const auto summary = fbq::quantize_model(options);
  // --float-target / --report-float-error add a column: the output error against the float model.
  const bool float_column = options.tracks_float_model();
  fmt::print(stderr, "\n{:<34} {:>11} {:>10} {:>10}{} {:>7} {:>7}  {}\n", "linear", "shape", "H-error", "RTN",
             float_column ? fmt::format(" {:>10}", "vs float") : "", "bpw", "sec", "note");
  for (const auto& r : summary.linears)
    fmt::print(stderr, "{:<34} {:>11} {:>10.6f} {:>10.6f}{} {:>7.3f} {:>7.3f}  {}\n", r.name,
               fmt::format("{}x{}", r.out_features, r.in_features), r.error, r.error_rtn,
               float_column ? fmt::format(" {:>10.6f}", r.error_float.value_or(0.0)) : "", r.bits_per_weight, r.seconds,
               r.note);
  const auto result = fbq::quantize_verdict(options, summary, verdict);
  if (as_json)
    print_json(result);
  else
    fmt::print("{}", fbq::format_verdict(result));
}

struct ExportArgs {
  std::string model, to, output, branch_out, checkpoint_format = "gptq";
  bool overwrite = false, json = false;
};

void print_gguf_export(const fbq::GgufExportOptions& options, const fbq::GgufExportSummary& summary, bool as_json);

void run_export(const ExportArgs& args) {
  if (args.to == "gptq") {
    if (!args.branch_out.empty() || args.overwrite) fbq::fail("--branch-out and --overwrite are for --to gguf");
    const fbq::GptqExportOptions options{args.model, args.output, fbq::parse_checkpoint_format(args.checkpoint_format)};
    return print_gptq_export(options, fbq::export_gptq(options), args.json);
  }
  if (args.to != "gguf") fbq::fail("--to {} is not a known target (use gptq or gguf)", args.to);
  fbq::GgufExportOptions options{.model = args.model, .output = args.output, .overwrite = args.overwrite};
  if (!args.branch_out.empty()) options.branch_output = args.branch_out;
  print_gguf_export(options, fbq::export_gguf(options), args.json);
}

void print_gguf_export(const fbq::GgufExportOptions& options, const fbq::GgufExportSummary& summary, bool as_json) {
  if (as_json) {
    print_json({{"to", "gguf"}, {"output", options.output}, {"file_bytes", summary.file_bytes},
                {"linear_types", summary.linear_types}, {"bits_per_weight", summary.bits_per_weight()},
                {"source_bits_per_weight", summary.source_bits_per_weight},
                {"branch_output", summary.branch_output}, {"branch_bytes", summary.branch_bytes},
                {"branch_tensors", summary.branch_tensors}, {"max_rank", summary.max_rank}});
    return;
  }
  std::string types;
  for (const auto& [type, count] : summary.linear_types) types += fmt::format("{}{} x{}", types.empty() ? "" : ", ", type, count);
  fmt::print("wrote {} ({:.2f} MiB)\n", options.output.string(), summary.file_bytes / 1048576.0);
  fmt::print("linears  {} (every weight exact)\n", types);
  fmt::print("bits     {:.3f} bits/weight as llama.cpp stores them ({:.3f} in fbquant's packed form)\n",
             summary.bits_per_weight(), summary.source_bits_per_weight);
  if (summary.branch_tensors > 0)
    fmt::print("branch   {} ({:.2f} MiB, {} tensors, ranks up to {}, applied at scale 1)\n",
               summary.branch_output.string(), summary.branch_bytes / 1048576.0, summary.branch_tensors, summary.max_rank);
  fmt::print("run      llama-cli -m {}{}\n", options.output.string(),
             summary.branch_tensors > 0 ? " --lora " + summary.branch_output.string() : "");
}

// A preset applies unless a method is named without one; any of its settings given explicitly wins.
struct PresetArgs {
  std::string name = fbq::kDefaultPreset;
  CLI::Option *preset, *method, *bits, *group_size, *rank, *branch_bits, *nsamples, *val_samples;

  bool applies() const { return preset->count() || !method->count(); }
  void apply(fbq::QuantizeOptions& quant) const {
    if (!applies()) return;
    const auto& p = fbq::find_quant_preset(name);
    const auto unless_given = [](const CLI::Option* option, auto& field, auto value) {
      if (!option->count()) field = value;
    };
    auto& mo = quant.method_options;
    unless_given(method, quant.method, p.method);
    unless_given(bits, mo.spec.bits, p.bits);
    unless_given(group_size, mo.spec.group_size, p.group_size);
    if (!rank->count()) unless_given(branch_bits, mo.branch_bits, p.branch_bits);
    unless_given(nsamples, quant.nsamples, p.nsamples);
    unless_given(val_samples, quant.validation_samples, p.validation_samples);
    quant.true_sequential |= p.true_sequential;
    quant.float_target |= p.float_target;
  }
};

struct EvalArgs {
  std::vector<std::string> tasks;
  fbq::TaskSources sources;
  std::string bos = "on";
  fbq::EvalOptions options;
  std::string samples_out, baseline;
  bool json = false, show_subtasks = false;
};

void run_eval(const ModelArgs& model_args, const EvalArgs& args) {
  if (args.bos != "on" && args.bos != "off") fbq::fail("--bos must be on or off (got '{}')", args.bos);
  auto options = args.options;
  options.scoring.bos = args.bos == "on";
  const auto tasks = fbq::load_tasks(args.tasks, args.sources);  // data errors before the model loads
  std::size_t documents = 0;
  for (const auto& task : tasks) documents += task.documents.size();
  fmt::print(stderr, "{} tasks, {} documents from {}{}\n", tasks.size(), documents, args.sources.data_dir.string(),
             args.sources.limit > 0 ? fmt::format(" (--limit {} per task)", args.sources.limit) : "");
  fmt::print(stderr, "bos: {}\n", options.scoring.bos
                                       ? "on (BOS before every context, as lm-eval >= 0.4.9.2 with LLaMA tokenizers)"
                                       : "off (no BOS, as lm-eval 0.4.0-0.4.9.1)");
  std::optional<Model> baseline_model;
  if (!args.baseline.empty()) {
    ModelArgs baseline_args = model_args;
    baseline_args.path = args.baseline;
    baseline_model.emplace(baseline_args.load());
  }
  const auto model = model_args.load();
  const auto results = fbq::evaluate_tasks(model, tasks, options);
  if (!args.samples_out.empty()) fbq::write_samples(args.samples_out, results);
  std::vector<fbq::PairedMetric> paired;
  if (baseline_model) {
    fmt::print(stderr, "baseline {}:\n", args.baseline);
    paired = fbq::paired_metrics(fbq::evaluate_tasks(*baseline_model, tasks, options), results);
  }
  const fbq::EvalRunInfo info{model_args.path, options.scoring.bos, args.sources.limit, options.scoring.batch_tokens,
                              args.sources.data_dir.string()};
  if (args.json) {
    auto out = fbq::results_json(results, info);
    if (baseline_model) out["paired"] = {{"baseline", args.baseline}, {"metrics", fbq::paired_json(paired)}};
    print_json(out);
    return;
  }
  fmt::print("{} (bos {})\n{}", model_args.path, args.bos, fbq::format_results_table(results, args.show_subtasks));
  if (baseline_model) fmt::print("\n{}", fbq::format_paired_table(paired, args.baseline, model_args.path));
}

std::string machine_line() {
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  return fmt::format("threads {}, OPENBLAS_CORETYPE={}, OMP_WAIT_POLICY={}, avx512 {}, avx2 {}", omp_get_max_threads(),
                     coretype ? coretype : "(unset)", std::getenv("OMP_WAIT_POLICY") ? std::getenv("OMP_WAIT_POLICY") : "(unset)",
                     fbq::kernel_isa_supported(fbq::KernelIsa::avx512) ? "yes" : "no",
                     fbq::kernel_isa_supported(fbq::KernelIsa::avx2) ? "yes" : "no");
}

void run_bench_kernels(const fbq::KernelBenchOptions& options, bool as_json) {
  fmt::print(stderr, "{}\nmeasuring read bandwidth (1 GiB)...\n", machine_line());
  const double bandwidth = fbq::measure_read_bandwidth();
  fmt::print(stderr, "read bandwidth: {:.1f} GB/s (and again after every case: the fraction is of that)\n", bandwidth);
  if (!as_json)
    fmt::print("{:<11} {:<7} {:<10} {:>4} {:>5} {:>4} {:>5} {:<8} {:>9} {:>7} {:>8} {:>9}\n", "shape", "kernel", "isa",
               "bits", "group", "rank", "batch", "branch", "us", "GB/s", "probe", "fraction");
  fbq::run_kernel_bench(options, [&](const fbq::KernelBenchCase& c) {
    if (as_json) {
      const nlohmann::json out = {
          {"shape", c.shape}, {"kernel", c.kernel}, {"isa", c.isa}, {"bits", c.bits}, {"group", c.group},
          {"rank", c.rank}, {"batch", c.batch}, {"fused", c.fused ? nlohmann::json(*c.fused) : nlohmann::json()},
          {"microseconds", c.microseconds}, {"bytes", c.bytes}, {"gbps", c.gbps},
          {"fraction_of_bandwidth", c.fraction_of_bandwidth}, {"bandwidth_gbps", c.bandwidth_gbps},
          {"start_bandwidth_gbps", bandwidth},
          {"threads", omp_get_max_threads()}};
      print_json(out);
    } else {
      fmt::print("{:<11} {:<7} {:<10} {:>4} {:>5} {:>4} {:>5} {:<8} {:>9.1f} {:>7.2f} {:>8.1f} {:>8.0f}%\n", c.shape, c.kernel,
                 c.isa, c.bits, c.group ? std::to_string(c.group) : "-", c.rank, c.batch,
                 c.fused ? (*c.fused ? "fused" : "unfused") : "-", c.microseconds, c.gbps, c.bandwidth_gbps,
                 100 * c.fraction_of_bandwidth);
    }
    std::fflush(stdout);
  });
}

void run_bench_models(const std::vector<std::string>& paths, const fbq::SpeedOptions& options, bool as_json) {
  for (const auto& path : paths) {
    ModelArgs args;
    args.path = path;
    args.require_tokenizer = false;
    const auto model = args.load();
    if (&path == &paths.front()) fmt::print(stderr, "{}\n", machine_line());
    const auto speed = fbq::measure_speed(model, options);
    if (as_json) {
      const nlohmann::json out = {{"model", path}, {"prompt_tokens", options.prompt_tokens},
                                  {"decode_tokens", options.decode_tokens}, {"weight_mib", speed.weight_bytes / 1048576.0},
                                  {"prefill_tokens_per_second", speed.prefill_tokens_per_second},
                                  {"decode_tokens_per_second", speed.decode_tokens_per_second},
                                  {"threads", omp_get_max_threads()}};
      print_json(out);
    } else {
      fmt::print("{}: {:.1f} MiB held, prefill {} tokens: {:.0f} tokens/s, decode {} tokens: {:.1f} tokens/s\n", path,
                 speed.weight_bytes / 1048576.0, options.prompt_tokens, speed.prefill_tokens_per_second,
                 options.decode_tokens, speed.decode_tokens_per_second);
    }
    std::fflush(stdout);
  }
}

// `-O KEY=VALUE` settings into the method's params map.
void parse_method_settings(const std::vector<std::string>& settings, fbq::MethodOptions& options) {
  for (const auto& setting : settings) {
    const auto equals = setting.find('=');
    if (equals == std::string::npos || equals == 0) fbq::fail("-O expects KEY=VALUE (got '{}')", setting);
    options.params[setting.substr(0, equals)] = setting.substr(equals + 1);
  }
}

void run_bench_method(const std::string& method, int rows, int cols, const fbq::MethodOptions& options, bool as_json) {
  options.spec.validate(cols);
  fmt::print(stderr, "{}\n", machine_line());
  auto start = std::chrono::steady_clock::now();
  const auto layer = fbq::synthetic_layer(rows, cols, options.seed);
  fmt::print(stderr, "synthetic {}x{} layer and H (seed {}) in {:.2f}s; running {}...\n", rows, cols, options.seed,
             fbq::seconds_since(start), method);
  const auto result = fbq::bench_method(method, layer, options);
  if (as_json) {
    nlohmann::json out = {{"method", method}, {"shape", {rows, cols}}, {"bits", options.spec.bits},
                          {"group", options.spec.group_size}, {"rank", result.layer.rank}, {"params", options.params},
                          {"seconds", result.seconds}, {"h_error", result.h_error}, {"note", result.layer.note},
                          {"threads", omp_get_max_threads()}};
    for (const auto& [key, value] : result.layer.metrics) out[key] = value;
    print_json(out);
  } else {
    fmt::print("{} on {}x{} W{} g{} rank {}: {:.2f}s, H-error {:.6f}  {}\n", method, rows, cols, options.spec.bits,
               options.spec.group_size, result.layer.rank, result.seconds, result.h_error, result.layer.note);
    for (const auto& [key, value] : result.layer.metrics) fmt::print("  {} = {}\n", key, value);
  }
}

}  // namespace

void add_sampling_options(CLI::App& command, fbq::GenerateOptions& options) {
  command.add_option("--temp", options.temperature, "temperature (0 = greedy)")->capture_default_str();
  command.add_option("--top-p", options.top_p, "nucleus sampling mass")->capture_default_str();
  command.add_option("--seed", options.seed, "random seed")->capture_default_str();
}

struct TokenizeArgs {
  std::string model, tokenizer, prompt, text_file, pre = "gpt2";
  bool pieces = false, bos = false, parse_special = false, json = false, stats = false, paragraphs = false;
};

// Control characters spelled out, so that a piece like "\n" is visible on its line.
std::string printable_piece(const std::string& piece) {
  std::string out;
  for (const char c : piece) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c == '\'') out += "\\'";
    else out += c;
  }
  return out;
}

void run_tokenize(const TokenizeArgs& args) {
  if (args.model.empty() == args.tokenizer.empty()) fbq::fail("tokenize: give either MODEL or --tokenizer FILE");
  std::filesystem::path tokenizer_path = args.tokenizer;
  if (!args.model.empty()) {
    const auto found = fbq::tokenizer_beside(args.model);
    if (!found) fbq::fail("{}: no tokenizer found beside the model; pass --tokenizer FILE", args.model);
    tokenizer_path = *found;
  }
  const auto tokenizer = fbq::load_tokenizer(tokenizer_path, 0, args.pre);
  if (args.paragraphs && args.text_file.empty()) fbq::fail("tokenize: --paragraphs reads --text FILE");
  const std::string text = args.text_file.empty() ? args.prompt
                           : args.paragraphs     ? fbq::read_paragraph_text(args.text_file)
                                                 : fbq::read_text_file(args.text_file);
  const auto start = std::chrono::steady_clock::now();
  const auto ids = tokenizer->tokenize(text, {.add_bos = args.bos, .parse_special = args.parse_special});
  const double seconds = fbq::seconds_since(start);
  if (args.stats) {  // throughput only: the encode call, without loading or reading
    const double mb_per_s = text.size() / 1e6 / std::max(seconds, 1e-9);
    if (args.json)
      print_json({{"tokenizer", tokenizer_path.string()}, {"bytes", text.size()}, {"tokens", ids.size()},
                  {"seconds", seconds}, {"mb_per_s", mb_per_s}});
    else
      fmt::print("{} bytes -> {} tokens in {:.3f} s: {:.2f} MB/s\n", text.size(), ids.size(), seconds, mb_per_s);
    return;
  }
  std::vector<std::string> pieces;
  for (std::size_t i = 0; args.pieces && i < ids.size(); ++i)
    pieces.push_back(tokenizer->decode_piece(i == 0 ? -1 : ids[i - 1], ids[i]));
  if (args.json) {
    nlohmann::json out = {{"ids", ids}};
    if (args.pieces) out["pieces"] = pieces;
    fmt::print("{}\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));  // ids only, as llama-tokenize
  } else if (args.pieces) {
    for (std::size_t i = 0; i < ids.size(); ++i) fmt::print("{:>6} -> '{}'\n", ids[i], printable_piece(pieces[i]));
  } else {
    fmt::print("[{}]\n", fmt::join(ids, ", "));
  }
}

int main(int argc, char** argv) {
  CLI::App app{"fbq — FeedBack Quantization toolkit for LLaMA-family models"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("-t,--threads", threads, "worker threads (default: all cores)")->check(CLI::NonNegativeNumber);
  bool exact_activations = false;
  app.add_flag("--exact-activations", exact_activations,
               "run packed models with float activations everywhere (the reference) instead of int8 activations "
               "(decode by default; generate, chat and bench also prefill with them; docs/FORMAT.md, integer tiles; "
               "FBQ_ACTIVATIONS=float|int8-decode|int8 sets it too)");

  ModelArgs ppl_model;
  std::string ppl_text = FBQ_DATA_DIR "/eval.txt";
  fbq::PerplexityOptions ppl_options;
  std::string ppl_nll_out;
  bool ppl_json = false;
  auto* perplexity = app.add_subcommand("perplexity", "perplexity of a text file (DESIGN §5 protocol)");
  ppl_model.add_to(*perplexity);
  perplexity->add_option("--text", ppl_text, "text file (paragraphs separated by blank lines; default: the bundled data/eval.txt)")
      ->capture_default_str();
  perplexity->add_option("--ctx", ppl_options.ctx, "window length in tokens")->capture_default_str();
  perplexity->add_option("--max-windows", ppl_options.max_windows, "score only the first K windows (0 = all)")
      ->check(CLI::NonNegativeNumber);
  perplexity->add_flag("--decode", ppl_options.decode,
                       "feed each window one token at a time through the KV cache (exercises the decode kernels)");
  perplexity->add_option("--nll-out", ppl_nll_out,
                         "write each scored token's NLL (little-endian float32, in scoring order) to FILE, for "
                         "paired comparisons of two models on the same text");
  perplexity->add_flag("--json", ppl_json, "print one JSON object instead of text");

  ModelArgs compare_baseline, compare_candidate;
  std::string compare_text = FBQ_DATA_DIR "/eval.txt";
  fbq::PerplexityOptions compare_options;
  bool compare_json = false;
  auto* compare = app.add_subcommand(
      "compare", "perplexity of two models on the same text, and their paired difference with its standard error");
  compare->add_option("BASELINE", compare_baseline.path, "the reference model (directory or .bin)")->required();
  compare->add_option("CANDIDATE", compare_candidate.path, "the model compared with it")->required();
  compare->add_option("--text", compare_text, "text file (paragraphs separated by blank lines; default: data/eval.txt)")
      ->capture_default_str();
  compare->add_option("--ctx", compare_options.ctx, "window length in tokens")->capture_default_str();
  compare->add_option("--max-windows", compare_options.max_windows, "score only the first K windows (0 = all)")
      ->check(CLI::NonNegativeNumber);
  compare->add_flag("--json", compare_json, "print one JSON object instead of text");

  ModelArgs eval_model;
  EvalArgs eval_args;
  auto* eval = app.add_subcommand("eval", "zero-shot accuracy, scored as lm-evaluation-harness v0.4.x scores it");
  eval_model.add_to(*eval);
  eval->add_option("--tasks", eval_args.tasks,
                   "comma-separated: arc_easy, arc_challenge, piqa, hellaswag, winogrande, boolq, openbookqa, "
                   "lambada_openai, mmlu, mmlu_<subject>, all; last_word_sotu, last_word_moby, last_word:TEXTFILE; "
                   "or FILE.jsonl (multiple choice: context, choices, gold[, continuation_suffix])")
      ->required()->delimiter(',');
  eval->add_option("--data", eval_args.sources.data_dir, "zero-shot data directory")->capture_default_str();
  eval->add_option("--text-dir", eval_args.sources.text_dir, "directory of sotu-test.txt / moby-test.txt (last_word_*)")
      ->capture_default_str();
  eval->add_option("--limit", eval_args.sources.limit, "the first N documents of each task (each MMLU subject); 0 = all")
      ->check(CLI::NonNegativeNumber);
  eval->add_option("--bos", eval_args.bos, "on: BOS before every context (lm-eval >= 0.4.9.2); off: none (0.4.0-0.4.9.1)")
      ->capture_default_str();
  eval->add_option("--batch-tokens", eval_args.options.scoring.batch_tokens, "tokens per packed forward pass")
      ->capture_default_str()->check(CLI::PositiveNumber);
  eval->add_option("--bootstrap-iters", eval_args.options.bootstrap_iterations,
                   "bootstrap resamples for the perplexity stderr (lm-eval's default; 0 = none)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  eval->add_option("--baseline", eval_args.baseline,
                   "a second model scored on the same documents: paired differences (this model − baseline)");
  eval->add_option("--samples-out", eval_args.samples_out, "per-document log-likelihoods, predictions and gold (JSONL)");
  eval->add_flag("--subtasks", eval_args.show_subtasks, "list every MMLU subject in the table");
  eval->add_flag("--json", eval_args.json, "print lm-eval-shaped JSON instead of the table");
  eval->add_flag_callback("--quiet", [&] { eval_args.options.progress = false; }, "no progress lines");

  ModelArgs gen_model;
  std::string prompt;
  fbq::GenerateOptions gen_options;
  auto* generate = app.add_subcommand("generate", "generate text from a prompt, streaming tokens");
  gen_model.add_to(*generate);
  generate->add_option("-p,--prompt", prompt, "prompt text")->required();
  generate->add_option("-n,--tokens", gen_options.max_new_tokens, "new tokens to generate")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  add_sampling_options(*generate, gen_options);
  bool gen_json = false;
  generate->add_flag("--json", gen_json, "print one JSON object (text, token counts, speed, peak memory) instead of streaming");

  ModelArgs chat_model;
  std::string chat_template;
  fbq::ChatOptions chat_options;
  auto* chat = app.add_subcommand("chat", "chat with an instruction-tuned model: your lines from stdin, replies streamed");
  chat_model.add_to(*chat);
  chat->add_option("--template", chat_template,
                   "chat template family (chatml, qwen2, llama2, llama3, mistral, phi3, zephyr, gemma; default: "
                   "detected from tokenizer_config.json's chat_template)");
  chat->add_option("--system", chat_options.system, "system message");
  chat->add_option("-n,--tokens", chat_options.generation.max_new_tokens, "new tokens per reply at most")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  chat->add_option("--ctx", chat_options.context, "KV-cache tokens for the whole conversation (at most the model's context)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  add_sampling_options(*chat, chat_options.generation);

  ModelArgs inspect_model;
  inspect_model.require_tokenizer = false;
  auto* inspect = app.add_subcommand("inspect", "config, tensors, shapes, dtypes and sizes of a model");
  inspect_model.add_to(*inspect);

  fbq::SynthOptions synth_options;
  std::string synth_dtype = "bf16", synth_tokenizer;
  bool synth_list = false, synth_quiet = false;
  auto* synth = app.add_subcommand("synth", "write a Hugging Face model directory with a known model's exact shapes and "
                                            "random weights (for speed and memory measurements at real sizes)");
  synth->add_option("--shape", synth_options.shape, "model shape (--list-shapes)");
  synth->add_flag("--list-shapes", synth_list, "list the shapes, then exit");
  synth->add_option("-o,--output", synth_options.output, "output directory (new; written atomically)");
  synth->add_option("--dtype", synth_dtype, "weight dtype: bf16, f16 or f32")->capture_default_str();
  synth->add_option("--seed", synth_options.seed, "seed of the random weights")->capture_default_str();
  synth->add_option("--layers", synth_options.layers, "decoder layers (default: the published count; fewer: a truncated "
                                                      "model of the same layer shape)");
  synth->add_option("--tokenizer", synth_tokenizer, "tokenizer.model or tokenizer.json to copy in (default: the shape's own)");
  synth->add_option("--tokenizer-dir", synth_options.tokenizer_dir, "where the shapes' own tokenizers are")
      ->capture_default_str();
  synth->add_flag("--no-tokenizer", synth_options.without_tokenizer, "write no tokenizer");
  synth->add_flag("-q,--quiet", synth_quiet, "no progress line");

  ExportArgs export_args;
  auto* export_command = app.add_subcommand(
      "export", "write a packed model in another engine's format, every weight exact: --to gptq (Hugging Face GPTQ + a "
                "PEFT LoRA adapter for the branch; vLLM, transformers) or --to gguf (llama.cpp + a GGUF LoRA adapter)");
  export_command->add_option("MODEL", export_args.model, "packed model directory written by fbq quantize")->required();
  export_command->add_option("--to", export_args.to, "target format: gptq or gguf")->required();
  export_command->add_option("-o,--output", export_args.output,
                             "gptq: output directory (must not exist); gguf: the .gguf file; written atomically")
      ->required();
  export_command->add_option("--checkpoint-format", export_args.checkpoint_format,
                             "gptq: gptq (v1: stores z - 1, needs every zero point >= 1) or gptq_v2 (stores z)")
      ->capture_default_str();
  export_command->add_option("--branch-out", export_args.branch_out,
                             "gguf: the branch's LoRA adapter file (default: OUTPUT with .lora.gguf)");
  export_command->add_flag("--overwrite", export_args.overwrite, "gguf: replace existing output files");
  export_command->add_flag("--json", export_args.json, "print one JSON summary object");

  TokenizeArgs tok;
  auto* tokenize = app.add_subcommand("tokenize", "token ids (or pieces) of a text, as llama.cpp's llama-tokenize prints them");
  tokenize->add_option("MODEL", tok.model, "model whose tokenizer to use (directory, .bin or .gguf)");
  tokenize->add_option("--tokenizer", tok.tokenizer,
                       "tokenizer file: tokenizer.json, vocab.json (+ merges.txt), tokenizer.model (SentencePiece or "
                       "tiktoken), .gguf, llama2.c tokenizer.bin");
  auto* tok_prompt = tokenize->add_option("-p,--prompt", tok.prompt, "text to tokenize");
  tokenize->add_option("--text", tok.text_file, "file whose exact bytes to tokenize")->excludes(tok_prompt);
  tokenize->add_flag("--paragraphs", tok.paragraphs,
                     "read --text as perplexity does (paragraphs joined by one blank line): with --bos, the tokens "
                     "perplexity scores, e.g. to score them in another engine");
  tokenize->add_option("--pre", tok.pre, "pre-tokenizer of a vocab.json + merges.txt pair (gpt2, llama3, qwen2, ...)")
      ->capture_default_str();
  tokenize->add_flag("--pieces", tok.pieces, "print each token's id and text");
  tokenize->add_flag("--bos", tok.bos, "put BOS first (when the tokenizer has one)");
  tokenize->add_flag("--parse-special", tok.parse_special, "control tokens written in the text become single tokens");
  tokenize->add_flag("--json", tok.json, "print {\"ids\": [...]}");
  tokenize->add_flag("--stats", tok.stats, "print only the byte and token counts and the encoding speed");

  fbq::QuantizeOptions quant;
  std::string quant_model, quant_output, quant_calib, quant_tokenizer;
  bool quant_json = false, quant_quiet = false;
  auto* quantize = app.add_subcommand("quantize", "quantize a model layer by layer and write a packed model directory");
  quantize->add_option("MODEL", quant_model, "Hugging Face model directory or llama2.c .bin checkpoint")->required();
  quantize->add_flag_callback("--list-methods", [] {
    for (const auto& name : fbq::method_names()) {
      const auto method = fbq::make_method(name);
      fmt::print("{}{}\n", name, method->uses_rank() ? " (low-rank branch: --rank or --branch-bits)" : "");
      for (const auto& p : method->params()) fmt::print("  -O {:<18} {}\n", p.name + "=" + p.default_value, p.help);
    }
    throw CLI::Success();
  }, "list methods and their -O settings, then exit");
  quantize->add_option("-o,--output", quant_output, "output directory (written atomically)")->required();
  quantize->add_option("--tokenizer", quant_tokenizer, "tokenizer file (default: the one beside MODEL)");
  PresetArgs preset;
  std::string preset_help = "recipe (default " + preset.name + " unless --method is given; explicit options override it):";
  for (const auto& p : fbq::quant_presets()) preset_help += "\n  " + p.name + ": " + p.summary;
  preset.preset = quantize->add_option("--preset", preset.name, preset_help);
  quantize->add_flag_callback("--list-presets", [] {
    for (const auto& p : fbq::quant_presets()) fmt::print("{:<8} {}\n", p.name, p.summary);
    fmt::print("measured bits/weight and quality of each on the bundled model: docs/RESULTS.md (presets)\n");
    throw CLI::Success();
  }, "list the presets, then exit");
  preset.method = quantize->add_option("--method", quant.method,
                                       "quantization method: " + fmt::format("{}", fmt::join(fbq::method_names(), ", ")));
  preset.bits = quantize->add_option("--bits", quant.method_options.spec.bits, "bits per weight: 2, 3, 4 or 8");
  preset.group_size = quantize->add_option("--group-size", quant.method_options.spec.group_size,
                                           "input columns per scale/zero group");
  preset.rank = quantize->add_option("--rank", quant.method_options.rank, "low-rank branch rank (methods with a branch)");
  preset.branch_bits = quantize->add_option("--branch-bits", quant.method_options.branch_bits,
                                            "size each layer's branch to cost ~X extra bits/weight (overrides --rank)");
  std::vector<std::string> method_settings;
  quantize->add_option("-O,--method-opt", method_settings, "method setting KEY=VALUE (see --list-methods)");
  preset.val_samples = quantize->add_option("--val-samples", quant.validation_samples,
                                            "extra held-out calibration windows for iterate selection (fbquant)");
  quant_calib = FBQ_DATA_DIR "/calib.txt";
  quantize->add_option("--calib", quant_calib, "calibration text file (default: the bundled data/calib.txt)")
      ->capture_default_str();
  fbq::VerdictOptions verdict{.eval_text = FBQ_DATA_DIR "/eval.txt"};
  quantize->add_option("--eval-text", verdict.eval_text,
                       "text on which the verdict compares the original and the result (PPL, paired)")
      ->capture_default_str();
  quantize->add_option("--eval-ctx", verdict.eval_ctx, "window length of the verdict's perplexity")->capture_default_str()
      ->check(CLI::PositiveNumber);
  quantize->add_flag("--no-eval", verdict.skip_eval, "skip the verdict's perplexity comparison");
  preset.nsamples = quantize->add_option("--nsamples", quant.nsamples, "calibration windows");
  quantize->add_option("--seqlen", quant.seqlen, "tokens per calibration window")->capture_default_str();
  quantize->add_option("--seed", quant.seed, "seed for window sampling and methods")->capture_default_str();
  quantize->add_flag("--float-target", quant.float_target,
                     "aim each linear at the float model's output (asymmetric calibration: the float model's "
                     "activations run beside the quantized ones)");
  quantize->add_flag("--true-sequential", quant.true_sequential,
                     "quantize q/k/v, o, gate/up, down in turn, each from inputs through the ones already quantized");
  quantize->add_flag("--report-float-error", quant.report_float_error,
                     "report each linear's output error against the float model (runs its activations beside)");
  quantize->add_option("--damp", quant.method_options.damp, "GPTQ damping (fraction of mean diag H)")->capture_default_str();
  quantize->add_option("--block-size", quant.method_options.block_size, "GPTQ lazy-batch block size")->capture_default_str();
  std::string zero_points = "any";
  quantize->add_option("--zero-points", zero_points,
                       "grid's zero points: any (z in [0, 2^b-1]), gptq (z in [1, 2^b-1]: what GPTQ v1 checkpoints "
                       "store) or symmetric (z = 2^(b-1), as --sym)")
      ->capture_default_str();
  bool symmetric = false;
  quantize->add_flag("--sym", symmetric, "symmetric grid, z = 2^(b-1) (vLLM's Marlin kernel; llama.cpp Q4_0/Q8_0)");
  quantize->add_option("--scale-bits", quant.method_options.spec.scale_bits,
                       "significant bits kept in each f16 scale (11 = all; 7 makes llama.cpp's Q4_1 exact)")
      ->capture_default_str();
  quantize->add_option("--head-bits", quant.head_bits,
                       "also quantize the output head (lm_head; of a tied model, a copy of the embedding) by RTN at 8 "
                       "or 4 bits on the linears' grid (--sym, --zero-points, --scale-bits); default: kept as stored");
  auto* head_group_size = quantize->add_option("--head-group-size", quant.head_group_size,
                                               "input columns per scale/zero group of the quantized head")
                              ->capture_default_str();
  quantize->add_flag("--act-order", quant.method_options.act_order, "GPTQ: quantize columns by decreasing diag(H)");
  quantize->add_flag("--clip-search", quant.method_options.clip_search, "RTN/AWQ/LQER: per-group clip ratio search");
  quantize->add_flag_callback("--plain-svd", [&] { quant.method_options.scaled_svd = false; },
                              "LQER: plain SVD instead of activation-scaled (L2QER)");
  quantize->add_option("--reconstruct", quant.reconstruct,
                       "layer (layer-wise only) or block: then Adam trains each decoder block's quantized linears "
                       "through the whole block against the float model's output, starting from the layer-wise "
                       "result (fbquant: its branch; rtn/gptq: a branch beside them from --rank/--branch-bits, or "
                       "with --lwc the clipping); the kept iterate is the best on --val-samples windows")
      ->capture_default_str();
  std::string block_input = "quantized";
  quantize->add_option("--block-input", block_input,
                       "block training input: quantized (the quantized model's own stream) or float (the float model's)")
      ->capture_default_str();
  quantize->add_option("--block-steps", quant.block.steps, "block training: Adam steps per block")->capture_default_str();
  quantize->add_option("--block-lr", quant.block.lr, "block training: learning rate (cosine to 0)")->capture_default_str();
  quantize->add_option("--block-batch", quant.block.batch, "block training: calibration windows per step")
      ->capture_default_str();
  quantize->add_option("--block-eval-every", quant.block.eval_every,
                       "block training: steps between held-out evaluations (kept-iterate candidates)")
      ->capture_default_str();
  quantize->add_option("--block-refresh-every", quant.block.refresh_every,
                       "block training, GPTQ inside: re-run GPTQ on W - B·A every k steps (RTN is refitted every step)")
      ->capture_default_str();
  quantize->add_flag("--block-norms", quant.block.train_norms, "block training: also train both RMSNorm weights");
  quantize->add_flag("--lwc", quant.block.lwc,
                     "with --reconstruct block and --method rtn: learnable weight clipping (OmniQuant LWC) per group "
                     "instead of a branch");
  quantize->add_flag("--overwrite", quant.overwrite, "replace an existing output directory");
  quantize->add_flag("--resume", quant.resume,
                     "continue a stopped run from its checkpoint (.OUT.partial), made with the same options and model");
  quantize->add_flag("--quiet", quant_quiet, "no progress lines");
  quantize->add_flag("--json", quant_json, "print one JSON summary object on stdout");

  std::string report_dir, report_out;
  auto* report = app.add_subcommand("report", "one self-contained HTML page (inline SVG) about a quantized model: "
                                              "verdict, per-layer errors, bits/weight, loss curves");
  report->add_option("DIR", report_dir, "packed model directory written by fbq quantize")->required();
  report->add_option("-o,--output", report_out, "HTML file to write (default: DIR/report.html)");

  std::string plot_spec, plot_out;
  auto* plot = app.add_subcommand("plot", "render a chart described in JSON as a self-contained SVG (scripts/plots.sh)");
  plot->add_option("SPEC", plot_spec, "JSON chart spec (src/report/svg_chart.h)")->required()->check(CLI::ExistingFile);
  plot->add_option("-o,--output", plot_out, "SVG file to write")->required();

  std::vector<std::string> bench_models;
  fbq::SpeedOptions speed_options;
  bool bench_json = false;
  auto* bench = app.add_subcommand(
      "bench", "speed: `bench kernels` (packed GEMV against memory bandwidth) or `bench MODEL...` (tokens/s)");
  bench->add_option("MODEL", bench_models, "model directories or .bin checkpoints to time (prefill and decode)");
  bench->add_option("--prompt-tokens", speed_options.prompt_tokens, "prefill length")->capture_default_str();
  bench->add_option("--decode-tokens", speed_options.decode_tokens, "decode steps")->capture_default_str();
  bench->add_option("--repeats", speed_options.repeats, "best of this many runs")->capture_default_str();
  bench->add_flag("--json", bench_json, "one JSON object per model");
  fbq::KernelBenchOptions kernel_options;
  std::vector<std::string> kernel_shapes;
  bool kernels_json = false, kernels_no_dense = false;
  auto* kernels = bench->add_subcommand("kernels", "packed decode kernels (fused/unfused branch) and dense f32/bf16 GEMV, "
                                                   "GB/s against the measured read bandwidth");
  kernels->add_option("--shapes", kernel_shapes, "ROWSxCOLS,... (default 4096x4096,11008x4096,4096x11008)")->delimiter(',');
  kernels->add_option("--bits", kernel_options.bits, "bit widths")->delimiter(',')->capture_default_str();
  kernels->add_option("--group-size", kernel_options.group_size, "group size")->capture_default_str();
  kernels->add_option("--ranks", kernel_options.ranks, "branch ranks")->delimiter(',')->capture_default_str();
  kernels->add_option("--batches", kernel_options.batches, "tokens per call (1..8)")->delimiter(',')->capture_default_str();
  kernels->add_option("--seconds", kernel_options.seconds_per_case, "timing budget per case and repeat")->capture_default_str();
  kernels->add_flag("--no-dense", kernels_no_dense, "skip the f32/bf16 baselines");
  kernels->add_flag("--json", kernels_json, "one JSON object per measured case");

  std::string bench_method_name = "fbquant";
  int method_rows = 4096, method_cols = 4096;
  fbq::MethodOptions method_options;
  method_options.spec = {3, 128};
  method_options.rank = 32;
  std::vector<std::string> method_settings_bench;
  bool method_json = false;
  auto* method_bench = bench->add_subcommand(
      "method", "time one quantization method on a synthetic layer with a correlated H (default 4096x4096)");
  method_bench->add_option("--method", bench_method_name, "quantization method")->capture_default_str();
  method_bench->add_option("--rows", method_rows, "output features")->capture_default_str()->check(CLI::PositiveNumber);
  method_bench->add_option("--cols", method_cols, "input features")->capture_default_str()->check(CLI::PositiveNumber);
  method_bench->add_option("--bits", method_options.spec.bits, "bits per weight")->capture_default_str();
  method_bench->add_option("--group-size", method_options.spec.group_size, "group size")->capture_default_str();
  method_bench->add_option("--rank", method_options.rank, "branch rank (methods with a branch)")->capture_default_str();
  method_bench->add_option("-O,--method-opt", method_settings_bench, "method setting KEY=VALUE");
  method_bench->add_option("--seed", method_options.seed, "seed of the synthetic layer")->capture_default_str();
  method_bench->add_flag("--json", method_json, "one JSON object");
  int checkpoint_hidden = 4096, checkpoint_windows = 128, checkpoint_seqlen = 256;
  bool checkpoint_float_stream = false;
  std::string checkpoint_dir = ".";
  auto* checkpoint_bench = bench->add_subcommand(
      "checkpoint", "time one layer's checkpoint of `fbq quantize` (the calibration stream + checkpoint.json) at a "
                    "model shape (default: Llama-2-7B's hidden size, 128 windows of 256 tokens)");
  checkpoint_bench->add_option("--hidden", checkpoint_hidden, "hidden size")->capture_default_str()->check(CLI::PositiveNumber);
  checkpoint_bench->add_option("--windows", checkpoint_windows, "calibration windows (--nsamples + --val-samples)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  checkpoint_bench->add_option("--seqlen", checkpoint_seqlen, "tokens per window")->capture_default_str()->check(CLI::PositiveNumber);
  checkpoint_bench->add_flag("--float-stream", checkpoint_float_stream,
                             "the float model's stream too (--float-target, --report-float-error)");
  checkpoint_bench->add_option("--dir", checkpoint_dir, "where to write (the output's filesystem)")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (threads > 0) {
      omp_set_num_threads(threads);
      openblas_set_num_threads(threads);
    }
    if (exact_activations)
      fbq::set_activations(fbq::Activations::exact);
    else if (!fbq::activations_from_environment() && (*generate || *chat || *bench))
      fbq::set_activations(fbq::Activations::int8);  // serving: the fastest path for the prompt too
    fbq::activations();                              // a bad FBQ_ACTIVATIONS fails here, before any work
    if (*perplexity) run_perplexity(ppl_model, ppl_text, ppl_options, ppl_nll_out, ppl_json);
    if (*compare) run_compare(compare_baseline, compare_candidate, compare_text, compare_options, compare_json);
    if (*eval) run_eval(eval_model, eval_args);
    if (*generate) run_generate(gen_model, prompt, gen_options, gen_json);
    if (*chat) chat_on_stdin(chat_model, chat_template, chat_options);
    if (*inspect) run_inspect(inspect_model);
    if (*export_command) run_export(export_args);
    if (*synth) run_synth(synth_options, synth_dtype, synth_tokenizer, synth_list, synth_quiet);
    if (*checkpoint_bench) {
      const auto cost = fbq::measure_checkpoint_cost(checkpoint_dir, checkpoint_hidden, checkpoint_windows,
                                                     checkpoint_seqlen, checkpoint_float_stream);
      fmt::print("checkpoint of one layer (hidden {}, {} windows of {} tokens{}): {:.1f} MB in {:.3f} s ({:.2f} GB/s), "
                 "best of 3, in {}\n", checkpoint_hidden, checkpoint_windows, checkpoint_seqlen,
                 checkpoint_float_stream ? ", float stream too" : "", cost.bytes / 1e6, cost.seconds,
                 cost.bytes / cost.seconds / 1e9, std::filesystem::absolute(checkpoint_dir).string());
    } else if (*method_bench) {
      parse_method_settings(method_settings_bench, method_options);
      if (!fbq::make_method(bench_method_name)->uses_rank()) method_options.rank = 0;
      run_bench_method(bench_method_name, method_rows, method_cols, method_options, method_json);
    } else if (*kernels) {
      if (!kernel_shapes.empty()) kernel_options.shapes.clear();
      for (const auto& shape : kernel_shapes) {
        int rows = 0, cols = 0;
        char separator = 0;
        if (std::sscanf(shape.c_str(), "%d%c%d", &rows, &separator, &cols) != 3 || separator != 'x' || rows < 1 || cols < 1)
          fbq::fail("--shapes expects ROWSxCOLS (got '{}')", shape);
        kernel_options.shapes.emplace_back(rows, cols);
      }
      if (kernel_options.group_size < 1 || kernel_options.bits.empty() || kernel_options.batches.empty())
        fbq::fail("bench kernels: needs bits, batches and a positive group size");
      for (const auto& [rows, cols] : kernel_options.shapes)
        if (cols % kernel_options.group_size != 0)
          fbq::fail("bench kernels: group size {} does not divide {} columns", kernel_options.group_size, cols);
      for (const int b : kernel_options.bits)
        if (b != 2 && b != 3 && b != 4 && b != 8) fbq::fail("bench kernels: bits must be 2, 3, 4 or 8 (got {})", b);
      for (const int b : kernel_options.batches)
        if (b < 1 || b > fbq::kKernelMaxBatch) fbq::fail("bench kernels: batch must be 1..{} (got {})", fbq::kKernelMaxBatch, b);
      for (const int r : kernel_options.ranks)
        if (r < 0) fbq::fail("bench kernels: rank must be >= 0 (got {})", r);
      kernel_options.dense = !kernels_no_dense;
      run_bench_kernels(kernel_options, kernels_json);
    } else if (*bench) {
      if (bench_models.empty()) fbq::fail("bench: give MODEL paths, or `bench kernels`");
      run_bench_models(bench_models, speed_options, bench_json);
    }
    if (*report) {
      if (report_out.empty()) report_out = (std::filesystem::path(report_dir) / "report.html").string();
      fbq::write_file_atomically(report_out, fbq::quantization_report_html(report_dir));
      fmt::print(stderr, "wrote {}\n", report_out);
    }
    if (*plot) fbq::write_file_atomically(plot_out, fbq::svg_chart_from_spec(fbq::read_text_file(plot_spec)));
    if (*tokenize) {
      if (!*tok_prompt && tok.text_file.empty()) fbq::fail("tokenize: give -p TEXT or --text FILE");
      run_tokenize(tok);
    }
    if (*quantize) {
      quant.model = quant_model;
      quant.output = quant_output;
      quant.calibration_text = quant_calib;
      if (!quant_tokenizer.empty()) quant.tokenizer = quant_tokenizer;
      quant.method_options.seed = quant.seed;
      parse_method_settings(method_settings, quant.method_options);
      quant.progress = !quant_quiet;
      if (block_input != "quantized" && block_input != "float")
        fbq::fail("--block-input must be quantized or float (got '{}')", block_input);
      quant.block_float_input = block_input == "float";
      quant.method_options.spec.zero_points = fbq::parse_zero_points(zero_points);
      if (symmetric) {
        if (quant.method_options.spec.zero_points == fbq::ZeroPoints::nonzero)
          fbq::fail("--sym and --zero-points {} contradict each other", zero_points);
        quant.method_options.spec.zero_points = fbq::ZeroPoints::symmetric;
      }
      if (head_group_size->count() > 0 && !quant.quantizes_head()) fbq::fail("--head-group-size needs --head-bits");
      preset.apply(quant);
      if (preset.applies()) verdict.preset = preset.name;
      if (!verdict.skip_eval && !std::filesystem::is_regular_file(verdict.eval_text))
        fbq::fail("--eval-text {}: no such file (or pass --no-eval)", verdict.eval_text.string());
      run_quantize(quant, verdict, quant_json);
    }
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "fbq: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
