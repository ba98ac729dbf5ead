#pragma once
// libtorch's CPU allocations, in a bounded set of sizes. Thread: any.

namespace sluice {

/// From the first call on, libtorch allocates CPU tensors of 64 KiB and more in a bounded set
/// of sizes: rounded up to 4 steps per doubling (at most 1/4 more; the tensors themselves keep
/// their shapes, so no result changes). A batch's activations are sized by its token count,
/// which differs on nearly every batch; without this, the allocator (tcmalloc) is asked for a
/// new size almost every time, its free blocks fit the next request less and less well, and
/// its heap creeps up over a long run. With it, freed blocks are reused exactly. Model::load
/// calls it; later calls do nothing.
void use_size_class_cpu_allocator();

}  // namespace sluice
