#include "model/layer_norm.hpp"

#include <algorithm>
#include <cmath>

namespace sluice {
namespace {

constexpr int kLanes = 16;

// The body, inlined into one copy per instruction set below. The 16 independent lanes let the
// compiler vectorise the sums without reassociating them.
#if defined(__GNUC__)
#define SLUICE_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define SLUICE_ALWAYS_INLINE inline
#endif

SLUICE_ALWAYS_INLINE void normalise_row(const float* x, float* y, std::int64_t n, const float* weight,
                                        const float* bias, float eps) {
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

using RowsFn = void (*)(const float*, std::int64_t, float*, std::int64_t, std::int64_t, std::int64_t, const float*,
                        const float*, float);

SLUICE_ALWAYS_INLINE void normalise_rows(const float* in, std::int64_t in_stride, float* out, std::int64_t out_stride,
                                         std::int64_t rows, std::int64_t n, const float* weight, const float* bias,
                                         float eps) {
  for (std::int64_t r = 0; r < rows; ++r) normalise_row(in + r * in_stride, out + r * out_stride, n, weight, bias, eps);
}

void rows_baseline(const float* in, std::int64_t in_stride, float* out, std::int64_t out_stride, std::int64_t rows,
                   std::int64_t n, const float* weight, const float* bias, float eps) {
  normalise_rows(in, in_stride, out, out_stride, rows, n, weight, bias, eps);
}

// Copies for AVX-512 and AVX2 on x86-64, picked once at run time. Not GCC's target_clones: its
// ifunc resolver runs while the dynamic linker relocates, before a sanitizer's runtime is up
// (ThreadSanitizer crashes in it).
#if defined(__x86_64__) && defined(__GNUC__)
#define SLUICE_X86_COPIES 1
__attribute__((target("avx512f"))) void rows_avx512(const float* in, std::int64_t in_stride, float* out,
                                                    std::int64_t out_stride, std::int64_t rows, std::int64_t n,
                                                    const float* weight, const float* bias, float eps) {
  normalise_rows(in, in_stride, out, out_stride, rows, n, weight, bias, eps);
}
__attribute__((target("avx2"))) void rows_avx2(const float* in, std::int64_t in_stride, float* out,
                                               std::int64_t out_stride, std::int64_t rows, std::int64_t n,
                                               const float* weight, const float* bias, float eps) {
  normalise_rows(in, in_stride, out, out_stride, rows, n, weight, bias, eps);
}
#endif

RowsFn pick_rows() noexcept {
#ifdef SLUICE_X86_COPIES
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return rows_avx512;
  if (__builtin_cpu_supports("avx2")) return rows_avx2;
#endif
  return rows_baseline;
}

}  // namespace

void layer_norm_rows(const float* in, std::int64_t in_stride, float* out, std::int64_t out_stride,
                     std::int64_t rows, std::int64_t n, const float* weight, const float* bias, float eps) {
  static const RowsFn rows_fn = pick_rows();
  rows_fn(in, in_stride, out, out_stride, rows, n, weight, bias, eps);
}

}  // namespace sluice
