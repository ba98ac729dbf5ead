#include "model/layer_norm.hpp"

#include <algorithm>
#include <array>
#include <cmath>

// Every copy below must give the same bits on every instruction set, so no multiply and add may
// be fused: this file is compiled with -ffp-contract=off (lib/src/model/meson.build). Under
// target("avx512f") GCC otherwise contracts `x * rstd + shift` into one FMA, and on a row whose
// variance is 0 (rstd = 1 / sqrt(eps), 1e6 for eps 1e-12) the exact product minus the rounded
// `rstd * mean` leaves the product's rounding error, up to a few units, where the unfused form
// gives exactly 0. The cost is nothing measurable: the kernel is bound by memory, not by
// arithmetic. tests/unit/layer_norm_test.cpp runs every copy the host can run and checks that
// they agree bit for bit.

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

// The copies, best first. `runs` is filled in at first use, after __builtin_cpu_init.
std::array<LayerNormCopy, 3> make_copies() noexcept {
#ifdef SLUICE_X86_COPIES
  __builtin_cpu_init();
  return {{
      {"avx512", "avx512f", __builtin_cpu_supports("avx512f") != 0, rows_avx512},
      {"avx2", "avx2", __builtin_cpu_supports("avx2") != 0, rows_avx2},
      {"baseline", "", true, rows_baseline},
  }};
#else
  return {{
      {"avx512", "avx512f", false, nullptr},
      {"avx2", "avx2", false, nullptr},
      {"baseline", "", true, rows_baseline},
  }};
#endif
}

const std::array<LayerNormCopy, 3>& copies() noexcept {
  static const std::array<LayerNormCopy, 3> all = make_copies();
  return all;
}

LayerNormRowsFn pick_rows() noexcept {
  for (const LayerNormCopy& c : copies()) {
    if (c.runs) return c.fn;
  }
  return rows_baseline;
}

}  // namespace

std::span<const LayerNormCopy> layer_norm_copies() noexcept { return copies(); }

void layer_norm_rows(const float* in, std::int64_t in_stride, float* out, std::int64_t out_stride,
                     std::int64_t rows, std::int64_t n, const float* weight, const float* bias, float eps) {
  static const LayerNormRowsFn rows_fn = pick_rows();
  rows_fn(in, in_stride, out, out_stride, rows, n, weight, bias, eps);
}

}  // namespace sluice
