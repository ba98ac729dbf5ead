#pragma once
/// OpenMP's wait policy for programs that run the model.
///
/// libtorch's intra-op threads are OpenMP threads (libgomp). By default they spin while
/// waiting for work; on a machine where other processes compete for the cores, spinning
/// threads steal time from the ones doing the work and throughput collapses (measured on
/// 2 cores with a compile running beside: 166 tokens/s spinning, 792 with a passive wait; see
/// docs/performance.md). libgomp reads OMP_WAIT_POLICY once, in its library constructor,
/// before main() runs. Two ways to set it first:
///
/// - SLUICE_PASSIVE_OMP_WAIT_AT_LOAD(), once in a program's main translation unit: a function
///   in the executable's .preinit_array, which the dynamic linker runs before any shared
///   library's constructor, sets OMP_WAIT_POLICY=PASSIVE unless OMP_WAIT_POLICY or
///   GOMP_SPINCOUNT is set. Nothing is loaded twice.
/// - reexec_with_passive_omp_wait(argv), first thing in main(): where the variable is not set
///   yet (a program without the hook), re-executes the program with it set. That loads
///   libtorch a second time (about half a second).
///
/// Thread: the main thread, before any other exists (they change the environment).

#include <cstdlib>

#include <unistd.h>

namespace sluice {

namespace detail {
/// Whether SLUICE_PASSIVE_OMP_WAIT_AT_LOAD's function ran: libc's own start-up code may set
/// the environment back to the original block after it, so main() cannot ask getenv().
inline bool omp_wait_set_at_load = false;
}  // namespace detail

/// Whether the user chose how libgomp waits (OMP_WAIT_POLICY or GOMP_SPINCOUNT is set).
inline bool omp_wait_chosen() {
  return std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr;
}

/// Sets OMP_WAIT_POLICY=PASSIVE unless omp_wait_chosen(). Safe before any library constructor
/// has run (no allocation beyond libc's environment array).
inline void set_passive_omp_wait_unless_chosen() {
  if (omp_wait_chosen()) return;
  static char setting[] = "OMP_WAIT_POLICY=PASSIVE";
  ::putenv(setting);
}

/// Unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is already set, re-executes the running program
/// with OMP_WAIT_POLICY=PASSIVE. Call first thing in main(). Returns (doing nothing) when
/// the variable is set or the re-execution fails.
inline void reexec_with_passive_omp_wait(char** argv) {
  if (detail::omp_wait_set_at_load || omp_wait_chosen()) return;
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::execv("/proc/self/exe", argv);
}

namespace detail {
inline void passive_omp_wait_preinit(int, char**, char**) {
  set_passive_omp_wait_unless_chosen();
  omp_wait_set_at_load = true;
}
}  // namespace detail

}  // namespace sluice

/// Put once in an executable (not a shared library: only executables have .preinit_array).
#define SLUICE_PASSIVE_OMP_WAIT_AT_LOAD()                                                    \
  [[gnu::section(".preinit_array"), gnu::used]] static void (*const sluice_omp_wait_preinit_)( \
      int, char**, char**) = &::sluice::detail::passive_omp_wait_preinit
