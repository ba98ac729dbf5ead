#pragma once
// Layer normalisation of float32 rows into memory the caller owns. libtorch's at::layer_norm
// always returns a new tensor (its out= form allocates one and copies it), and the encoders
// write every activation into buffers reused from call to call (bert_model.cpp), so they
// normalise with this instead. No torch headers. Thread: any (pure function).

#include <cstdint>

namespace sluice {

/// For each of `rows` rows of `n` floats: y = (x - mean) / sqrt(var + eps) * weight + bias,
/// with the mean and the (biased) variance of the row, as torch.nn.LayerNorm computes it.
/// Row r is read at in + r * in_stride and written at out + r * out_stride; `out` may be `in`
/// (in place), and any other overlap is not allowed. The sums run in 16 float lanes, the
/// variance in a second pass over the row (not E[x^2] - mean^2), so the result agrees with
/// libtorch's to float rounding (a few units in the last place).
void layer_norm_rows(const float* in, std::int64_t in_stride, float* out, std::int64_t out_stride,
                     std::int64_t rows, std::int64_t n, const float* weight, const float* bias, float eps);

}  // namespace sluice
