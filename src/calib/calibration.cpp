#include "calib/calibration.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "io/text_files.h"
#include "util/error.h"

namespace fbq {

std::vector<std::vector<int>> sample_calibration_windows(const Tokenizer& tokenizer, const std::filesystem::path& text,
                                                         int count, int length, std::uint64_t seed) {
  if (count <= 0) fail("--nsamples must be positive (got {})", count);
  if (length < 2) fail("--seqlen must be at least 2 (got {})", length);
  // Tokenizing a whole 25 MB corpus costs a minute and 2 GB; instead cut the text at paragraph boundaries
  // into non-overlapping segments of ~16 bytes per wanted token and tokenize only the segments drawn.
  const std::string corpus = read_paragraph_text(text);
  const std::size_t segment_bytes = static_cast<std::size_t>(length) * 16;
  std::vector<std::pair<std::size_t, std::size_t>> segments;  // [begin, end) byte ranges
  for (std::size_t begin = 0; begin < corpus.size();) {
    std::size_t end = corpus.find("\n\n", std::min(corpus.size(), begin + segment_bytes));
    end = end == std::string::npos ? corpus.size() : end;
    segments.emplace_back(begin, end);
    begin = end + 2;
  }
  std::mt19937_64 rng(seed);
  // Fisher–Yates by hand: std::shuffle's algorithm is implementation-defined, and the seed must reproduce.
  for (std::size_t i = segments.size() - 1; i > 0; --i) std::swap(segments[i], segments[rng() % (i + 1)]);

  std::vector<std::vector<int>> windows;
  for (const auto& [begin, end] : segments) {
    if (static_cast<int>(windows.size()) == count) break;
    const auto tokens = tokenizer.encode(std::string_view(corpus).substr(begin, end - begin), /*add_bos=*/true);
    if (static_cast<int>(tokens.size()) >= length) windows.emplace_back(tokens.begin(), tokens.begin() + length);
  }
  if (static_cast<int>(windows.size()) < count)
    fail("{}: the text yields only {} windows of {} tokens; {} requested (use a longer file or fewer --nsamples)",
         text.string(), windows.size(), length, count);
  return windows;
}

namespace {

// The full symmetric n × n matrix whose upper triangle is `upper` (as BLAS syrk leaves it), times `scale`.
std::vector<double> scaled_symmetric(const std::vector<double>& upper, int n, double scale) {
  std::vector<double> full(upper.size());
  for (int i = 0; i < n; ++i)
    for (int j = i; j < n; ++j) {
      const double value = upper[static_cast<std::size_t>(i) * n + j] * scale;
      full[static_cast<std::size_t>(i) * n + j] = value;
      full[static_cast<std::size_t>(j) * n + i] = value;
    }
  return full;
}

}  // namespace

HessianAccumulator::HessianAccumulator(int n)
    : n_(n), sum_outer_(static_cast<std::size_t>(n) * n, 0.0), sum_abs_(n, 0.0) {}

void HessianAccumulator::add(const float* x, int n_tokens) {
  chunk_.assign(x, x + static_cast<std::size_t>(n_tokens) * n_);
  for (int t = 0; t < n_tokens; ++t)
    for (int j = 0; j < n_; ++j) sum_abs_[j] += std::fabs(chunk_[static_cast<std::size_t>(t) * n_ + j]);
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n_, n_tokens, 1.0, chunk_.data(), n_, 1.0, sum_outer_.data(), n_);
  tokens_ += n_tokens;
}

LayerStats HessianAccumulator::finish() const {
  LayerStats stats;
  stats.n = n_;
  stats.tokens = tokens_;
  const double scale = tokens_ > 0 ? 1.0 / static_cast<double>(tokens_) : 0.0;
  stats.hessian = scaled_symmetric(sum_outer_, n_, scale);
  stats.mean_abs.resize(n_);
  for (int j = 0; j < n_; ++j) stats.mean_abs[j] = static_cast<float>(sum_abs_[j] * scale);
  return stats;
}

DriftAccumulator::DriftAccumulator(int n)
    : n_(n), sum_cross_(static_cast<std::size_t>(n) * n, 0.0), sum_energy_(static_cast<std::size_t>(n) * n, 0.0) {}

void DriftAccumulator::add(const float* x, const float* x_float, int n_tokens) {
  const std::size_t size = static_cast<std::size_t>(n_tokens) * n_;
  x_chunk_.assign(x, x + size);
  d_chunk_.resize(size);
  for (std::size_t i = 0; i < size; ++i) d_chunk_[i] = x_chunk_[i] - static_cast<double>(x_float[i]);
  // Rows are tokens: Σ_t x_t·d_tᵀ = Xᵀ·D in the token-major layout.
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_, n_, n_tokens, 1.0, x_chunk_.data(), n_, d_chunk_.data(),
              n_, 1.0, sum_cross_.data(), n_);
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n_, n_tokens, 1.0, d_chunk_.data(), n_, 1.0, sum_energy_.data(),
              n_);
  tokens_ += n_tokens;
}

InputDrift DriftAccumulator::finish() const {
  InputDrift drift;
  drift.n = n_;
  const double scale = tokens_ > 0 ? 1.0 / static_cast<double>(tokens_) : 0.0;
  drift.cross.resize(sum_cross_.size());
  for (std::size_t i = 0; i < sum_cross_.size(); ++i) drift.cross[i] = sum_cross_[i] * scale;
  drift.energy = scaled_symmetric(sum_energy_, n_, scale);
  return drift;
}

}  // namespace fbq
