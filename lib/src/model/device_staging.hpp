#pragma once
/// Running an encoder on ModelOptions::device: the device check made once at load, and the
/// per-batch path of the host-side vectors (token ids, positions, pooling indices) to the
/// device and of the result back. Shared by bert_model.cpp, torchscript_model.cpp and
/// use_lite_model.cpp. Includes ATen, so only those torch files include it.
///
/// Only generic libtorch API is used here (at::Device, pinned at::empty, Tensor::to with
/// non_blocking, torch::cuda::device_count), so the CUDA path compiles and links in every
/// build, a CPU-only libtorch's included (docs/models.md, "Devices").

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <span>
#include <vector>

#include <sluice/model.hpp>

namespace sluice {

/// The libtorch device for `device`, checked. Throws sluice::Error (invalid_argument) saying
/// why a CUDA device cannot be used: this sluice was built without CUDA (meson -Dcuda), no
/// CUDA device is visible, or the index is out of range. Call once, at load.
at::Device torch_device(const Device& device);

/// A batch's way to and from the model's device. One per model; used by the thread that calls
/// embed() (Model::embed's contract: one thread at a time).
///
/// CPU: nothing is staged or copied. longs() views the caller's vector in place (at::from_blob)
/// and copy_out() is one memcpy, exactly what the encoders did before devices existed.
///
/// CUDA: longs() writes the vector into a page-locked (pinned) host arena, reused from batch to
/// batch, and starts a non-blocking copy of that part to the device, so the copy overlaps the
/// host's work on the next vector. copy_out() copies only the [batch, dimensions] result back,
/// synchronously: when it returns, every copy out of the arena has completed, so the next
/// batch may overwrite it. A batch that ended in an error instead (no copy_out) makes the next
/// begin_batch() wait for the device first.
class DeviceStaging {
 public:
  explicit DeviceStaging(at::Device device) : device_(device) {}

  at::Device device() const noexcept { return device_; }
  bool on_cpu() const noexcept { return device_.is_cpu(); }

  /// Starts a batch: the arena is reused from its beginning.
  void begin_batch();

  /// A 1-D int64 tensor with the values of `v` on the device. CPU: a view of `v`, which must
  /// outlive the tensor's use (and nothing is touched, so any thread may call it). CUDA: a
  /// copy, `v` may change as soon as this returns.
  at::Tensor longs(std::span<const std::int64_t> v);

  /// Runs `rows_of(begin, end)` over the rows [0, rows) of a batch's per-row work (attention).
  /// CPU: one parallel region over the rows rather than one per small op, so each row's
  /// matmuls and softmax run on one thread (ATen and OpenBLAS do not nest), which keeps
  /// OpenMP's fork/join and waiting out of the inner loop. CUDA: all rows on this thread, the
  /// kernels queued on the device's stream.
  template <typename F>
  void for_rows(std::int64_t rows, const F& rows_of) const {
    if (on_cpu()) {
      at::parallel_for(0, rows, 1, rows_of);
    } else {
      rows_of(0, rows);
    }
  }

  /// Writes the float32 result `y` [rows, columns] row-major into the front of `out` (which
  /// check_batch made sure is long enough) and ends the batch.
  void copy_out(const at::Tensor& y, std::span<float> out);

 private:
  at::Device device_;
  at::Tensor arena_;                  // CUDA: pinned int64, reused across batches
  std::int64_t used_ = 0;             // int64s of arena_ handed out in this batch
  std::vector<at::Tensor> outgrown_;  // arenas replaced during this batch: copies may be pending
  bool pending_ = false;              // a batch began and did not reach copy_out
};

}  // namespace sluice
