#pragma once
// Layer normalisation of float32 rows into memory the caller owns. libtorch's at::layer_norm
// always returns a new tensor (its out= form allocates one and copies it), and the encoders
// write every activation into buffers reused from call to call (bert_model.cpp), so they
// normalise with this instead. No torch headers. Thread: any (pure function).

#include <cstdint>
#include <span>

namespace sluice {

/// For each of `rows` rows of `n` floats: y = (x - mean) / sqrt(var + eps) * weight + bias,
/// with the mean and the (biased) variance of the row, as torch.nn.LayerNorm computes it.
/// Row r is read at in + r * in_stride and written at out + r * out_stride; `out` may be `in`
/// (in place), and any other overlap is not allowed. The sums run in 16 float lanes, the
/// variance in a second pass over the row (not E[x^2] - mean^2), so the result agrees with
/// libtorch's to float rounding (a few units in the last place). Every copy (below) gives the
/// same bits: no multiply-add is fused, and the lanes fix the order of every sum.
void layer_norm_rows(const float* in, std::int64_t in_stride, float* out, std::int64_t out_stride,
                     std::int64_t rows, std::int64_t n, const float* weight, const float* bias, float eps);

using LayerNormRowsFn = void (*)(const float* in, std::int64_t in_stride, float* out, std::int64_t out_stride,
                                 std::int64_t rows, std::int64_t n, const float* weight, const float* bias, float eps);

/// One compiled copy of layer_norm_rows for an instruction set. layer_norm_rows calls the first
/// copy that runs on this CPU; the tests call each one.
struct LayerNormCopy {
  const char* name;     ///< "avx512", "avx2", "baseline"
  const char* feature;  ///< the CPU feature it needs, as /proc/cpuinfo names it ("" for none)
  bool runs;            ///< this CPU has the feature (and the copy was compiled in)
  LayerNormRowsFn fn;   ///< null where the copy is not compiled in (not x86-64)
};

/// Every copy, best first (the last, the baseline, always runs).
std::span<const LayerNormCopy> layer_norm_copies() noexcept;

}  // namespace sluice
