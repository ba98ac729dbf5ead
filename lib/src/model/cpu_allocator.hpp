#pragma once
// libtorch's CPU memory over a long run: allocations in a bounded set of sizes, and a bounded
// oneDNN primitive cache. Both are process-wide. Thread: any.

namespace sluice {

/// From the first call on, libtorch allocates CPU tensors of 64 KiB and more in a bounded set
/// of sizes: rounded up to 4 steps per doubling (at most 1/4 more; the tensors themselves keep
/// their shapes, so no result changes). A batch's activations are sized by its token count,
/// which differs on nearly every batch; without this, the allocator (tcmalloc) is asked for a
/// new size almost every time, its free blocks fit the next request less and less well, and
/// its heap creeps up over a long run. With it, freed blocks are reused exactly. Model::load
/// calls it; later calls do nothing.
void use_size_class_cpu_allocator();

/// How many CPU tensors of 64 KiB or more libtorch has allocated since
/// use_size_class_cpu_allocator() (a relaxed count). Tests use it to show that a model call
/// whose activations fit its workspace allocates none.
unsigned long long large_cpu_allocations() noexcept;

/// oneDNN keeps every primitive it creates in a cache of 1024 entries by default, keyed by
/// shape. libtorch runs GELU (and, in bfloat16, the matmuls) through oneDNN, and a batch's shape
/// differs on nearly every batch, so over a long run the cache fills with primitives that are
/// never used again: several MiB more, reached only after thousands of batches. This caps it at
/// kOneDnnPrimitiveCacheCapacity, enough for every shape of one batch on each model call (a
/// batch's layers reuse them). Creating an eltwise primitive again costs tens to hundreds of
/// microseconds against a call of tens of milliseconds. Does nothing when ONEDNN_PRIMITIVE_CACHE_CAPACITY
/// (or DNNL_PRIMITIVE_CACHE_CAPACITY) is set or libtorch has no oneDNN. Model::load calls it.
inline constexpr int kOneDnnPrimitiveCacheCapacity = 32;
void bound_onednn_primitive_cache();

}  // namespace sluice
