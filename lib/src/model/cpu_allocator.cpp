#include "model/cpu_allocator.hpp"

#include <dlfcn.h>

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdlib>

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

namespace sluice {
namespace {

constexpr std::size_t kRoundFrom = std::size_t{64} << 10;

std::atomic<unsigned long long> large_allocations{0};

/// n rounded up to a multiple of 2^(floor(log2 n) - 2): 4 sizes per doubling.
std::size_t size_class(std::size_t n) noexcept {
  if (n < kRoundFrom) return n;
  const std::size_t step = std::bit_floor(n) >> 2;
  return (n + step - 1) / step * step;
}

class SizeClassCpuAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(std::size_t n) const override {
    if (n >= kRoundFrom) large_allocations.fetch_add(1, std::memory_order_relaxed);
    void* p = c10::alloc_cpu(size_class(n));
    return {p, p, &c10::free_cpu, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &c10::free_cpu; }
};

}  // namespace

void use_size_class_cpu_allocator() {
  // Installed once (a function-local static's initialisation is thread-safe), above libtorch's
  // default CPU allocator (priority 0).
  static const bool installed = [] {
    static SizeClassCpuAllocator allocator;
    c10::SetCPUAllocator(&allocator, 1);
    return true;
  }();
  (void)installed;
}

unsigned long long large_cpu_allocations() noexcept { return large_allocations.load(std::memory_order_relaxed); }

void bound_onednn_primitive_cache() {
  static const bool done = [] {
    if (std::getenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY") != nullptr ||
        std::getenv("DNNL_PRIMITIVE_CACHE_CAPACITY") != nullptr) {
      return false;
    }
    // Looked up rather than linked: libtorch loads oneDNN (libdnnl) when it was built with it.
    using SetCapacity = int (*)(int);
    auto set = reinterpret_cast<SetCapacity>(dlsym(RTLD_DEFAULT, "dnnl_set_primitive_cache_capacity"));
    return set != nullptr && set(kOneDnnPrimitiveCacheCapacity) == 0;
  }();
  (void)done;
}

}  // namespace sluice
