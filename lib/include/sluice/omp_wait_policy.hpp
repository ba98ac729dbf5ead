#pragma once
/// OpenMP's wait policy for programs that run the model.
///
/// libtorch's intra-op threads are OpenMP threads (libgomp). By default they spin while
/// waiting for work; on a machine where other processes compete for the cores, spinning
/// threads steal time from the ones doing the work and throughput collapses (measured on
/// 2 cores with a compile running beside: 166 tokens/s spinning, 792 with a passive wait; see
/// docs/performance.md). libgomp reads OMP_WAIT_POLICY once, when the process starts, so
/// a program must set it before it starts: this re-executes the program with it set.

#include <cstdlib>

#include <unistd.h>

namespace sluice {

/// Unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is already set, re-executes the running program
/// with OMP_WAIT_POLICY=PASSIVE. Call first thing in main(). Returns (doing nothing) when
/// the variable is set or the re-execution fails.
inline void reexec_with_passive_omp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr) return;
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::execv("/proc/self/exe", argv);
}

}  // namespace sluice
