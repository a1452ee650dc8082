// Issue 17, "nothing lost, nothing crashes": `fbq quantize` killed at any point continues with --resume to
// the bytes an uninterrupted run writes; what the thread count changes (rounding only); failed writes (full
// disk, read-only or occupied destinations) end in one error line and leave no partial output behind.
#include <fmt/core.h>
#include <omp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "quant/quantize_model.h"
#include "test_support.h"

namespace fbq {
namespace {

namespace fs = std::filesystem;

// How the child `fbq` process is run.
struct ChildSetup {
  std::string kill_at;         // FBQ_TEST_KILL_AT
  rlim_t file_size_limit = 0;  // RLIMIT_FSIZE in bytes (0: none); SIGXFSZ ignored, so write() gets EFBIG
  bool unprivileged = false;   // run as nobody (root writes into read-only directories)
};

struct ChildResult {
  int status = 0;
  std::string err;
  bool exited(int code) const { return WIFEXITED(status) && WEXITSTATUS(status) == code; }
  bool killed() const { return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL; }
};

ChildResult run_fbq(const std::vector<std::string>& args, const ChildSetup& setup, const fs::path& scratch) {
  const auto err_path = scratch / "child-stderr.txt";
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (!setup.kill_at.empty()) ::setenv("FBQ_TEST_KILL_AT", setup.kill_at.c_str(), 1);
    if (setup.file_size_limit) {
      const rlimit limit{setup.file_size_limit, setup.file_size_limit};
      ::setrlimit(RLIMIT_FSIZE, &limit);
      ::signal(SIGXFSZ, SIG_IGN);
    }
    if (setup.unprivileged && ::getuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(99);
    if (!std::freopen("/dev/null", "w", stdout) || !std::freopen(err_path.c_str(), "w", stderr)) ::_exit(98);
    std::vector<char*> argv{const_cast<char*>(FBQ_CLI_PATH)};
    for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    ::execv(FBQ_CLI_PATH, argv.data());
    ::_exit(97);
  }
  ChildResult result;
  ::waitpid(pid, &result.status, 0);
  result.err = test::read_file(err_path);
  return result;
}

// Small settings: 4 windows of 64 tokens; FBQuant (GPTQ inside) with 20 Adam steps.
std::vector<std::string> quantize_args(const fs::path& out, const std::vector<std::string>& extra = {},
                                       const std::string& method = "fbquant") {
  std::vector<std::string> args = {"quantize", test::bundled_model().string(), "-o", out.string(), "--method", method,
                                   "--bits", "3", "--nsamples", "4", "--seqlen", "64", "--seed", "5", "--no-eval",
                                   "--quiet"};
  if (method == "fbquant") args.insert(args.end(), {"--branch-bits", "0.25", "-O", "steps=20"});
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// verdict.json holds timings and quant_report.json wall-clock "seconds" fields (docs/FORMAT.md): everything
// else must match byte for byte.
void expect_same_output(const fs::path& expected, const fs::path& actual) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(expected)) names.push_back(entry.path().filename().string());
  for (const auto& entry : fs::directory_iterator(actual))
    EXPECT_TRUE(fs::exists(expected / entry.path().filename())) << "extra file " << entry.path();
  const auto without_timings = [](const fs::path& path) {
    return std::regex_replace(test::read_file(path), std::regex(R"("seconds": [0-9.e+-]+)"), "");
  };
  for (const auto& name : names) {
    if (name == "verdict.json") continue;
    const bool report = name == "quant_report.json";
    const auto a = report ? without_timings(expected / name) : test::read_file(expected / name);
    const auto b = report ? without_timings(actual / name) : test::read_file(actual / name);
    EXPECT_TRUE(a == b) << name << " differs between " << expected << " and " << actual;
  }
}

bool has_error_line(const ChildResult& r, const std::string& expected) {
  return r.exited(1) && r.err.rfind("fbq: error: ", 0) == 0 && std::ranges::count(r.err, '\n') == 1 &&
         r.err.find(expected) != std::string::npos;
}

class QuantizeResume : public ::testing::Test {
 protected:
  void SetUp() override { FBQ_REQUIRE_FILE(test::bundled_model() / "model.safetensors"); }
  fs::path out(const std::string& name) const { return tmp_.path() / name; }
  ChildResult run(const std::vector<std::string>& args, const ChildSetup& setup = {}) const {
    return run_fbq(args, setup, tmp_.path());
  }
  // The uninterrupted run every interrupted one is compared with, made once per test suite.
  const fs::path& reference(bool float_target = false) {
    static const test::TempDir references;
    static std::map<bool, fs::path> made;
    if (!made.contains(float_target)) {
      const auto path = references.path() / fmt::format("reference-{}", float_target);
      const auto r = run(quantize_args(path, float_target ? std::vector<std::string>{"--float-target"}
                                                          : std::vector<std::string>{}));
      EXPECT_TRUE(r.exited(0)) << r.err;
      made[float_target] = path;
    }
    return made[float_target];
  }
  test::TempDir tmp_;
};

// Killed after layer k's checkpoint, halfway through writing a stream, just before the commit, after the last
// layer and while renaming into place: each time the output does not exist yet, and --resume completes it
// to the same bytes. The float model's stream (--float-target) is checkpointed too.
TEST_F(QuantizeResume, KilledRunsResumeToTheSameBytes) {
  for (const auto& [float_target, points] :
       {std::pair{false, std::vector<const char*>{"layer:2", "stream-write:4", "commit:3", "finish:6"}},
        std::pair{true, std::vector<const char*>{"stream-write:2", "layer:6"}}}) {
    const auto extra = float_target ? std::vector<std::string>{"--float-target"} : std::vector<std::string>{};
    auto resume_args = extra;
    resume_args.push_back("--resume");
    for (const auto* point : points) {
      SCOPED_TRACE(fmt::format("{} float_target {}", point, float_target));
      const auto path = out(fmt::format("killed-{}-{}", float_target, point));
      ASSERT_TRUE(run(quantize_args(path, extra), {.kill_at = point}).killed());
      EXPECT_FALSE(fs::exists(path)) << "a stopped run leaves no output that looks whole";
      EXPECT_TRUE(fs::exists(partial_output(path)));
      const auto resumed = run(quantize_args(path, resume_args));
      ASSERT_TRUE(resumed.exited(0)) << resumed.err;
      EXPECT_FALSE(fs::exists(partial_output(path)));
      expect_same_output(reference(float_target), path);
    }
  }
}

// A resumed run can be killed and resumed again.
TEST_F(QuantizeResume, ResumedRunsCanBeStoppedAgain) {
  const auto path = out("twice");
  ASSERT_TRUE(run(quantize_args(path), {.kill_at = "layer:1"}).killed());
  ASSERT_TRUE(run(quantize_args(path, {"--resume"}), {.kill_at = "stream-write:3"}).killed());
  const auto resumed = run(quantize_args(path, {"--resume"}));
  ASSERT_TRUE(resumed.exited(0)) << resumed.err;
  expect_same_output(reference(), path);
}

// The checkpoint belongs to one command: other options are refused (naming what differs) and leave it in
// place; a plain rerun is refused too, so that no finished layer is thrown away by mistake; --overwrite
// starts over.
TEST_F(QuantizeResume, RefusesACheckpointOfAnotherCommand) {
  const auto path = out("stopped");
  ASSERT_TRUE(run(quantize_args(path), {.kill_at = "layer:2"}).killed());
  const auto refused_with = [&](const std::string& option, const std::string& value, const std::string& named) {
    auto args = quantize_args(path, {"--resume"});
    *(std::ranges::find(args, option) + 1) = value;
    const auto r = run(args);
    EXPECT_TRUE(has_error_line(r, "was made by a different command")) << r.err;
    EXPECT_NE(r.err.find(named), std::string::npos) << r.err;
  };
  refused_with("--seed", "6", "calibration_windows, settings.calibration, settings.options");
  refused_with("--bits", "4", "differs in settings.options)");
  auto other_threads = quantize_args(path, {"--resume"});
  other_threads.insert(other_threads.begin(), {"-t", std::to_string(omp_get_max_threads() + 1)});
  const auto threads = run(other_threads);
  EXPECT_TRUE(has_error_line(threads, "differs in threads)")) << threads.err;
  const auto plain = run(quantize_args(path));
  EXPECT_TRUE(has_error_line(plain, "pass --resume to continue it")) << plain.err;
  EXPECT_TRUE(fs::exists(partial_output(path)));
  const auto over = run(quantize_args(path, {"--overwrite"}));
  EXPECT_TRUE(over.exited(0)) << over.err;
  expect_same_output(reference(), path);
}

// The safetensors header: every tensor's name, dtype, shape and offsets.
std::string safetensors_header(const fs::path& file) {
  const auto bytes = test::read_file(file);
  std::uint64_t length = 0;
  std::memcpy(&length, bytes.data(), sizeof length);
  return bytes.substr(0, 8 + length);
}

double mean_h_error(const fs::path& output) {
  const auto report = nlohmann::json::parse(test::read_file(output / "quant_report.json"));
  double total = 0;
  for (const auto& layer : report["layers"]) total += layer["h_error"].get<double>() / report["layers"].size();
  return total;
}

// Determinism (README "Determinism"): the same command and thread count give the same bytes. Across thread
// counts (-t 1 / -t 2) OpenBLAS sums sgemm/ddot/dpotrf in a thread-count-dependent order, so the weights
// differ by rounding (codes flip at quantization boundaries); pinned here: everything but the tensor data is
// identical, and the quality is the same within a few percent.
TEST_F(QuantizeResume, ThreadCountChangesOnlyRoundingOfTheTensorData) {
  for (const auto* method : {"fbquant", "gptq"}) {
    SCOPED_TRACE(method);
    const auto with_threads = [&](const char* threads, const char* name) {
      const auto path = out(fmt::format("{}-{}", method, name));
      auto args = quantize_args(path, {}, method);
      args.insert(args.begin(), {"-t", threads});
      const auto r = run(args);
      EXPECT_TRUE(r.exited(0)) << r.err;
      return path;
    };
    const auto one = with_threads("1", "t1"), two = with_threads("2", "t2");
    for (const auto* name : {"config.json", "tokenizer.model"})
      EXPECT_EQ(test::read_file(one / name), test::read_file(two / name)) << name;
    EXPECT_EQ(safetensors_header(one / "model.safetensors"), safetensors_header(two / "model.safetensors"));
    EXPECT_NEAR(mean_h_error(one) / mean_h_error(two), 1.0, 0.05);
    if (std::string(method) == "gptq") expect_same_output(two, with_threads("2", "t2-again"));
  }
}

// A full disk (RLIMIT_FSIZE): one error line, exit 1, no output. Before the first layer is finished (1 MiB:
// the embedding does not fit) the temporary directory is removed too; after some layers (4 MiB) the
// checkpoint is kept, the message says so, and --resume, with space again, completes the same bytes.
TEST_F(QuantizeResume, FullDiskLeavesNoPartialOutput) {
  for (const bool after_some_layers : {false, true}) {
    const auto path = out(fmt::format("full-{}", after_some_layers));
    const auto r = run(quantize_args(path), {.file_size_limit = after_some_layers ? 4u << 20 : 1u << 20});
    EXPECT_TRUE(has_error_line(r, after_some_layers ? "rerun with --resume to continue" : "failed (disk full?)")) << r.err;
    EXPECT_FALSE(fs::exists(path));
    ASSERT_EQ(fs::exists(partial_output(path)), after_some_layers);
    if (!after_some_layers) continue;
    const auto resumed = run(quantize_args(path, {"--resume"}));
    ASSERT_TRUE(resumed.exited(0)) << resumed.err;
    expect_same_output(reference(), path);
  }
}

// Destinations that cannot be written or are occupied are refused before any work, and left as they were.
TEST_F(QuantizeResume, BadDestinationsAreRefusedAndLeftAlone) {
  const auto locked = out("locked");
  fs::create_directories(locked);
  fs::permissions(out(""), fs::perms::others_all, fs::perm_options::add);  // nobody reaches `locked`
  fs::permissions(locked, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                              fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
  const auto read_only = run(quantize_args(locked / "q"), {.unprivileged = true});
  EXPECT_TRUE(has_error_line(read_only, "is not writable")) << read_only.err;
  EXPECT_TRUE(fs::is_empty(locked));

  const auto file = out("a-file");
  test::write_file(file, "not a model");
  for (const auto& extra : {std::vector<std::string>{}, std::vector<std::string>{"--overwrite"}}) {
    const auto r = run(quantize_args(file, extra));
    EXPECT_TRUE(has_error_line(r, "exists and is not a directory")) << r.err;
    EXPECT_EQ(test::read_file(file), "not a model");
  }

  const auto occupied = out("occupied");
  fs::create_directories(occupied);
  test::write_file(occupied / "notes.txt", "mine");
  const auto kept = run(quantize_args(occupied));
  EXPECT_TRUE(has_error_line(kept, "already exists (pass --overwrite to replace it)")) << kept.err;
  const auto refused = run(quantize_args(occupied, {"--overwrite"}));
  EXPECT_TRUE(has_error_line(refused, "is not an fbq quantize output")) << refused.err;
  EXPECT_EQ(test::read_file(occupied / "notes.txt"), "mine");
  for (const auto* name : {"a-file", "occupied", "locked"}) EXPECT_FALSE(fs::exists(partial_output(out(name))));
}

}  // namespace
}  // namespace fbq
