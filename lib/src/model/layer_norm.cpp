#include "model/layer_norm.hpp"

#include <algorithm>
#include <cmath>

namespace sluice {
namespace {

constexpr int kLanes = 16;

// Compiled for AVX-512, AVX2 and plain x86-64; the loader picks the one the CPU runs. The
// 16 independent lanes let the compiler vectorise the sums without reassociating them.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SLUICE_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SLUICE_CPU_CLONES
#endif

SLUICE_CPU_CLONES
void normalise_row(const float* x, float* y, std::int64_t n, const float* weight, const float* bias, float eps) {
  float lanes[kLanes] = {};
  std::int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += x[j + l];
  }
  float sum = 0;
  for (int l = 0; l < kLanes; ++l) sum += lanes[l];
  for (; j < n; ++j) sum += x[j];
  const float mean = sum / static_cast<float>(n);

  float squares[kLanes] = {};
  j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float d = x[j + l] - mean;
      squares[l] += d * d;
    }
  }
  float var = 0;
  for (int l = 0; l < kLanes; ++l) var += squares[l];
  for (; j < n; ++j) var += (x[j] - mean) * (x[j] - mean);
  var /= static_cast<float>(n);

  // libtorch's form: (x * rstd - rstd * mean) * weight + bias.
  const float rstd = 1.0f / std::sqrt(std::max(var, 0.0f) + eps);
  const float shift = -rstd * mean;
  for (j = 0; j < n; ++j) y[j] = (x[j] * rstd + shift) * weight[j] + bias[j];
}

}  // namespace

void layer_norm_rows(const float* in, std::int64_t in_stride, float* out, std::int64_t out_stride,
                     std::int64_t rows, std::int64_t n, const float* weight, const float* bias, float eps) {
  for (std::int64_t r = 0; r < rows; ++r) normalise_row(in + r * in_stride, out + r * out_stride, n, weight, bias, eps);
}

}  // namespace sluice
