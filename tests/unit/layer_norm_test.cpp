// layer_norm_rows: torch.nn.LayerNorm's arithmetic on float rows, in place or not, on strided rows.
//
// The kernel has one copy per instruction set (baseline, AVX2, AVX-512). meson runs this program
// once per copy, named by SLUICE_LAYER_NORM_COPY (tests/unit/meson.build: layer_norm_baseline,
// layer_norm_avx2, layer_norm_avx512). A copy this host cannot run makes the program exit as
// skipped, with the reason, never as passed. Every copy the host runs must give the baseline's
// bits on the same inputs.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "model/layer_norm.hpp"
#include "test_skip.hpp"

using namespace sluice;

namespace {

/// The copy under test, or null (the program then exits as skipped) where this host cannot run it.
/// Unnamed: the copy layer_norm_rows itself calls.
const LayerNormCopy* copy_under_test() {
  const char* env = std::getenv("SLUICE_LAYER_NORM_COPY");
  const std::string wanted = env != nullptr ? env : "";
  for (const LayerNormCopy& c : layer_norm_copies()) {
    if (wanted.empty() ? !c.runs : wanted != c.name) continue;
    if (!c.runs) {
      sluice::test::skip_program(
          c.fn == nullptr ? std::string("the ") + c.name + " copy of layer_norm_rows is not compiled for this CPU architecture"
                          : std::string("the ") + c.name + " copy of layer_norm_rows needs the CPU feature " + c.feature +
                                ", which this host lacks: not tested here");
      return nullptr;
    }
    return &c;
  }
  FAIL("SLUICE_LAYER_NORM_COPY names no copy: " << wanted);
  return nullptr;
}

const LayerNormCopy& baseline() { return layer_norm_copies().back(); }

/// The same normalisation in double, the mean and variance in two passes.
std::vector<double> reference(const std::vector<float>& x, std::int64_t rows, std::int64_t n,
                              const std::vector<float>& w, const std::vector<float>& b, double eps) {
  std::vector<double> y(static_cast<std::size_t>(rows * n));
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = x.data() + r * n;
    double mean = 0, var = 0;
    for (std::int64_t j = 0; j < n; ++j) mean += row[j];
    mean /= static_cast<double>(n);
    for (std::int64_t j = 0; j < n; ++j) var += (row[j] - mean) * (row[j] - mean);
    var /= static_cast<double>(n);
    for (std::int64_t j = 0; j < n; ++j) {
      y[static_cast<std::size_t>(r * n + j)] = (row[j] - mean) / std::sqrt(var + eps) * w[j] + b[j];
    }
  }
  return y;
}

std::vector<float> random_floats(std::size_t count, float scale, float shift, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(count);
  for (float& f : v) f = d(rng) * scale + shift;
  return v;
}

std::vector<float> run(LayerNormRowsFn fn, const std::vector<float>& x, std::int64_t rows, std::int64_t n,
                       const std::vector<float>& w, const std::vector<float>& b, float eps) {
  std::vector<float> y(x.size());
  fn(x.data(), n, y.data(), n, rows, n, w.data(), b.data(), eps);
  return y;
}

}  // namespace

TEST_CASE("layer_norm_rows agrees with a double-precision layer norm") {
  const LayerNormCopy* copy = copy_under_test();
  if (copy == nullptr) return;
  CAPTURE(copy->name);
  std::mt19937 rng(7);
  // Hidden sizes of the encoders, a size with a tail after the 16-float lanes, and tiny rows.
  for (const std::int64_t n : {384, 768, 37, 16, 1}) {
    CAPTURE(n);
    const std::int64_t rows = 50;
    // A large offset relative to the spread: where E[x^2] - mean^2 would lose the variance.
    const std::vector<float> x = random_floats(static_cast<std::size_t>(rows * n), 2.0f, 100.0f, rng);
    const std::vector<float> w = random_floats(static_cast<std::size_t>(n), 1.0f, 0.0f, rng);
    const std::vector<float> b = random_floats(static_cast<std::size_t>(n), 1.0f, 0.0f, rng);
    const std::vector<double> want = reference(x, rows, n, w, b, 1e-12);

    const std::vector<float> y = run(copy->fn, x, rows, n, w, b, 1e-12f);
    double worst = 0;
    for (std::size_t i = 0; i < y.size(); ++i) worst = std::max(worst, std::abs(y[i] - want[i]));
    // A row of one float normalises to its bias exactly: x - mean is 0 (x * rstd and rstd * mean
    // round alike), whatever rstd is. A fused multiply-add breaks this (3.45 off, eps 1e-12).
    CHECK(worst < (n == 1 ? 1e-6 : 2e-4));

    // In place, on every other row of a wider buffer (the query columns of a q|k|v row), gives
    // the same bytes and leaves the other columns alone.
    const std::int64_t stride = 3 * n;
    std::vector<float> wide(static_cast<std::size_t>(rows * stride), -7.0f);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t j = 0; j < n; ++j) wide[static_cast<std::size_t>(r * stride + j)] = x[static_cast<std::size_t>(r * n + j)];
    }
    copy->fn(wide.data(), stride, wide.data(), stride, rows, n, w.data(), b.data(), 1e-12f);
    bool same = true, untouched = true;
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t j = 0; j < n; ++j) {
        same = same && wide[static_cast<std::size_t>(r * stride + j)] == y[static_cast<std::size_t>(r * n + j)];
      }
      for (std::int64_t j = n; j < stride; ++j) untouched = untouched && wide[static_cast<std::size_t>(r * stride + j)] == -7.0f;
    }
    CHECK(same);
    CHECK(untouched);
  }
}

TEST_CASE("layer_norm_rows: a constant row gives the bias exactly, eps keeps it finite") {
  const LayerNormCopy* copy = copy_under_test();
  if (copy == nullptr) return;
  CAPTURE(copy->name);
  // Widths with and without a tail after the lanes, and eps as the encoders use it (1e-12 makes
  // rstd 1e6). The values have few significant bits, so that the row's sum and mean are exact
  // and x - mean is 0 (any value for a row of one); rstd * mean is not exact in float, which is
  // where a fused multiply-add would leave its rounding error.
  for (const std::int64_t n : {1, 3, 16, 32, 37, 384}) {
    for (const float value : {3.5f, 100.125f, -0.375f, 1234.5f, n == 1 ? 100.1f : 7.0f, n == 1 ? -0.3f : 0.5f}) {
      for (const float eps : {1e-5f, 1e-12f}) {
        CAPTURE(n);
        CAPTURE(value);
        CAPTURE(eps);
        const std::vector<float> x(static_cast<std::size_t>(n), value), w(static_cast<std::size_t>(n), 2.0f),
            b(static_cast<std::size_t>(n), 0.25f);
        bool all_bias = true;
        for (const float v : run(copy->fn, x, 1, n, w, b, eps)) all_bias = all_bias && v == 0.25f;
        CHECK(all_bias);
      }
    }
  }
}

TEST_CASE("every copy this host runs gives the baseline's bits") {
  const LayerNormCopy* copy = copy_under_test();
  if (copy == nullptr) return;
  CAPTURE(copy->name);
  std::mt19937 rng(11);
  for (const std::int64_t n : {384, 768, 1024, 37, 17, 16, 1}) {
    for (const float shift : {0.0f, 100.0f, -3000.0f}) {
      CAPTURE(n);
      CAPTURE(shift);
      const std::int64_t rows = 40;
      const std::vector<float> x = random_floats(static_cast<std::size_t>(rows * n), 3.0f, shift, rng);
      const std::vector<float> w = random_floats(static_cast<std::size_t>(n), 1.0f, 0.5f, rng);
      const std::vector<float> b = random_floats(static_cast<std::size_t>(n), 1.0f, 0.0f, rng);
      for (const float eps : {1e-5f, 1e-12f}) {
        const std::vector<float> want = run(baseline().fn, x, rows, n, w, b, eps);
        const std::vector<float> got = run(copy->fn, x, rows, n, w, b, eps);
        std::size_t differ = 0;
        for (std::size_t i = 0; i < got.size(); ++i) differ += std::memcmp(&got[i], &want[i], sizeof(float)) != 0;
        CHECK(differ == 0);
      }
    }
  }
}

TEST_CASE("layer_norm_rows calls the best copy this host runs") {
  const char* env = std::getenv("SLUICE_LAYER_NORM_COPY");
  if (env != nullptr && *env != '\0') return;  // once, in the unnamed run
  const LayerNormCopy* best = nullptr;
  for (const LayerNormCopy& c : layer_norm_copies()) {
    MESSAGE("layer_norm_rows copy " << std::string(c.name) << ": " << (c.runs ? "runs on this host" : "does not run on this host"));
    if (best == nullptr && c.runs) best = &c;
  }
  REQUIRE(best != nullptr);
  CHECK(std::string(baseline().name) == "baseline");
  CHECK(baseline().runs);
  std::mt19937 rng(3);
  const std::vector<float> x = random_floats(384 * 8, 1.0f, 0.0f, rng), w(384, 1.0f), b(384, 0.0f);
  std::vector<float> y(x.size());
  layer_norm_rows(x.data(), 384, y.data(), 384, 8, 384, w.data(), b.data(), 1e-12f);
  CHECK(y == run(best->fn, x, 8, 384, w, b, 1e-12f));
}
