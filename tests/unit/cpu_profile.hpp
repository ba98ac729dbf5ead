#pragma once
// The model tests under a pinned CPU profile: the instruction sets libtorch's own kernels
// (ATen), oneDNN (GELU, bf16 and int8 matmuls) use, so that one host tests the code paths of
// several classes of CPU. meson runs model_test once per profile (tests/unit/meson.build):
//
//   (none)        what this host picks
//   avx2          ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2: an AVX2 server
//   avx512_core   ATEN_CPU_CAPABILITY=avx512, ONEDNN_MAX_CPU_ISA=AVX512_CORE: AVX-512 without
//                 VNNI or AVX512_BF16 (Skylake-SP), where oneDNN emulates bf16
//
// A profile the host cannot run makes the program exit as skipped (test_skip.hpp). The test
// reads oneDNN's ISA back; ATen's choice is not exported by libtorch 1.13, which reads
// ATEN_CPU_CAPABILITY at first dispatch and says so on stderr when it ignores a value. OpenBLAS
// (fp32 matmuls) picks its kernel by itself, or by OPENBLAS_CORETYPE where that is set.
//
// What cannot be pinned: libtorch sends bf16 matmuls to oneDNN only where the CPU itself has
// AVX512BW/VL/DQ (cpuinfo, not oneDNN's ISA), so under the avx2 profile an AVX-512 host would
// still send them there, to a oneDNN that is not allowed AVX-512: that is no CPU's path, and
// the bf16 case says so and does not run. A real AVX2 host runs libtorch's own bf16 fallback.

#include <dlfcn.h>

#include <cstdlib>
#include <string>

#include "test_skip.hpp"

namespace sluice::test {

/// SLUICE_TEST_CPU_PROFILE: "" for the host's own choice, "avx2" or "avx512_core".
inline std::string cpu_profile() {
  const char* v = std::getenv("SLUICE_TEST_CPU_PROFILE");
  return v != nullptr ? v : "";
}

/// oneDNN's effective ISA (dnnl_cpu_isa_t), read from the loaded library; -1 if it is not loaded.
inline int onednn_isa() {
  using Fn = int (*)();
  auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "dnnl_get_effective_cpu_isa"));
  return fn != nullptr ? fn() : -1;
}

/// Whether the host can run the profile; if not, marks the program skipped with the reason.
inline bool cpu_profile_runs_here() {
  const std::string p = cpu_profile();
  __builtin_cpu_init();
  if (p == "avx2" && !__builtin_cpu_supports("avx2")) {
    skip_program("the avx2 CPU profile needs AVX2, which this host lacks: not tested here");
    return false;
  }
  if (p == "avx512_core" && !(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                              __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))) {
    skip_program("the avx512_core CPU profile needs AVX-512 F/BW/VL/DQ, which this host lacks: not tested here");
    return false;
  }
  return true;
}

/// Whether bf16 matmuls here take a path some real CPU takes (see the top of this file).
inline bool bf16_path_is_real() {
  __builtin_cpu_init();
  return !(cpu_profile() == "avx2" && __builtin_cpu_supports("avx512bw"));
}

}  // namespace sluice::test
