// layer_norm_rows: torch.nn.LayerNorm's arithmetic on float rows, in place or not, on strided rows.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "model/layer_norm.hpp"

using namespace sluice;

namespace {

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

}  // namespace

TEST_CASE("layer_norm_rows agrees with a double-precision layer norm") {
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

    std::vector<float> y(x.size());
    layer_norm_rows(x.data(), n, y.data(), n, rows, n, w.data(), b.data(), 1e-12f);
    double worst = 0;
    for (std::size_t i = 0; i < y.size(); ++i) worst = std::max(worst, std::abs(y[i] - want[i]));
    CHECK(worst < (n == 1 ? 1e-6 : 2e-4));  // a row of one float normalises to its bias

    // In place, on every other row of a wider buffer (the query columns of a q|k|v row), gives
    // the same bytes and leaves the other columns alone.
    const std::int64_t stride = 3 * n;
    std::vector<float> wide(static_cast<std::size_t>(rows * stride), -7.0f);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t j = 0; j < n; ++j) wide[static_cast<std::size_t>(r * stride + j)] = x[static_cast<std::size_t>(r * n + j)];
    }
    layer_norm_rows(wide.data(), stride, wide.data(), stride, rows, n, w.data(), b.data(), 1e-12f);
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

TEST_CASE("layer_norm_rows: a constant row gives the bias, eps keeps it finite") {
  const std::vector<float> x(32, 3.5f), w(32, 2.0f), b(32, 0.25f);
  std::vector<float> y(32);
  layer_norm_rows(x.data(), 32, y.data(), 32, 1, 32, w.data(), b.data(), 1e-5f);
  for (const float v : y) CHECK(v == 0.25f);
}
