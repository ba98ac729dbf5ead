#include "model/device_staging.hpp"

#include <torch/cuda.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include <sluice/error.hpp>

namespace sluice {
namespace {

// meson -Dcuda=enabled defines SLUICE_WITH_CUDA and links libtorch_cuda, whose static
// initialisers register libtorch's CUDA backend. Everything below compiles either way.
#ifdef SLUICE_WITH_CUDA
constexpr bool kBuiltWithCuda = true;
#else
constexpr bool kBuiltWithCuda = false;
#endif

constexpr std::int64_t kMinArena = 1 << 14;  // int64s: 128 KiB, more than most batches need

}  // namespace

at::Device torch_device(const Device& device) {
  if (device.kind == DeviceKind::cpu) return at::Device(at::kCPU);
  const std::string name = device_name(device);
  if (!kBuiltWithCuda) {
    throw Error(ErrorCode::invalid_argument,
                fmt::format("device {}: this sluice was built without CUDA: configure it with -Dcuda=enabled against "
                            "a CUDA-enabled libtorch (docs/models.md, \"Devices\")",
                            name));
  }
  const std::size_t count = torch::cuda::device_count();
  if (count == 0) {
    throw Error(ErrorCode::invalid_argument,
                fmt::format("device {}: no CUDA device is visible (torch::cuda::device_count() is 0): check the "
                            "NVIDIA driver and CUDA_VISIBLE_DEVICES",
                            name));
  }
  if (device.index < 0 || static_cast<std::size_t>(device.index) >= count) {
    throw Error(ErrorCode::invalid_argument,
                fmt::format("device {}: only {} CUDA device{} visible ({})", name, count,
                            count == 1 ? " is" : "s are",
                            count == 1 ? std::string("cuda:0") : fmt::format("cuda:0 .. cuda:{}", count - 1)));
  }
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device.index));
}

void DeviceStaging::begin_batch() {
  if (on_cpu()) return;
  if (pending_) {
    // The last batch failed part way: its copies out of the arena may still be queued.
    try {
      torch::cuda::synchronize(device_.index());
    } catch (const c10::Error&) {
      arena_ = at::Tensor();  // the device is in error; do not hand out memory it may still read
    }
  }
  outgrown_.clear();
  used_ = 0;
  pending_ = true;
}

at::Tensor DeviceStaging::longs(std::span<const std::int64_t> v) {
  const auto n = static_cast<std::int64_t>(v.size());
  if (on_cpu()) {
    return at::from_blob(const_cast<std::int64_t*>(v.data()), {n}, at::TensorOptions().dtype(at::kLong));
  }
  if (!arena_.defined() || used_ + n > arena_.numel()) {
    const std::int64_t capacity = std::max({kMinArena, n, arena_.defined() ? 2 * arena_.numel() : 0});
    if (arena_.defined()) outgrown_.push_back(std::move(arena_));
    arena_ = at::empty({capacity}, at::TensorOptions().dtype(at::kLong).pinned_memory(true));
    used_ = 0;
  }
  at::Tensor host = arena_.narrow(0, used_, n);
  used_ += n;
  if (n > 0) std::memcpy(host.data_ptr<std::int64_t>(), v.data(), v.size() * sizeof(std::int64_t));
  return host.to(device_, at::kLong, /*non_blocking=*/true);
}

void DeviceStaging::copy_out(const at::Tensor& y, std::span<float> out) {
  if (on_cpu()) {
    const at::Tensor c = y.contiguous();
    std::memcpy(out.data(), c.data_ptr<float>(), static_cast<std::size_t>(c.numel()) * sizeof(float));
    return;
  }
  // Device to pageable host memory: synchronous, so the batch's work and its copies out of the
  // arena have all completed when this returns.
  at::from_blob(out.data(), y.sizes(), at::TensorOptions().dtype(at::kFloat)).copy_(y);
  pending_ = false;
}

}  // namespace sluice
