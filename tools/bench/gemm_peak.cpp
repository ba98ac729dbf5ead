// gemm-peak: the matrix-product speed this machine reaches through the same libtorch the encoder
// uses (at::mm, float32), as the yardstick for the encoder's achieved GFLOP/s.
//
//   gemm-peak [--threads N] [--seconds S] [--shape MxKxN ...]
//
// For each shape ([M, K] x [K, N]; default 1024, 2048 and 3072 square) it warms up, then runs
// at::mm_out for about S seconds (default 1) and keeps the fastest call: 2*M*K*N / time. The
// threads are the encoder's (0 = every core) with the same OpenMP wait policy as pipeline-run.
// Prints one JSON line: threads, one entry per shape, and the peak over the shapes.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <sluice/omp_wait_policy.hpp>

namespace {

struct Shape {
  long m, k, n;
};

bool parse_shape(const char* s, Shape& out) {
  return std::sscanf(s, "%ldx%ldx%ld", &out.m, &out.k, &out.n) == 3 && out.m > 0 && out.k > 0 && out.n > 0;
}

}  // namespace

// OMP_WAIT_POLICY=PASSIVE before libgomp reads it (omp_wait_policy.hpp); the re-execution
// in main() is then a no-op kept for safety.
SLUICE_PASSIVE_OMP_WAIT_AT_LOAD();

int main(int argc, char** argv) {
  sluice::reexec_with_passive_omp_wait(argv);
  int threads = 0;
  double seconds = 1.0;
  std::vector<Shape> shapes;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = std::stoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) {
      seconds = std::stod(argv[++i]);
    } else if (!std::strcmp(argv[i], "--shape") && i + 1 < argc) {
      Shape s{};
      if (!parse_shape(argv[++i], s)) {
        std::fprintf(stderr, "gemm-peak: bad shape %s (want MxKxN)\n", argv[i]);
        return 2;
      }
      shapes.push_back(s);
    } else {
      std::fprintf(stderr, "usage: gemm-peak [--threads N] [--seconds S] [--shape MxKxN ...]\n");
      return 2;
    }
  }
  if (shapes.empty()) shapes = {{1024, 1024, 1024}, {2048, 2048, 2048}, {3072, 3072, 3072}};
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  at::manual_seed(0);

  std::string entries;
  double peak = 0;
  for (const Shape& s : shapes) {
    const at::Tensor a = at::randn({s.m, s.k});
    const at::Tensor b = at::randn({s.k, s.n});
    at::Tensor c = at::empty({s.m, s.n});
    for (int i = 0; i < 2; ++i) at::mm_out(c, a, b);  // warm-up: pages, thread pool
    double best = 1e30, total = 0;
    int calls = 0;
    while (total < seconds || calls < 3) {
      const auto t0 = std::chrono::steady_clock::now();
      at::mm_out(c, a, b);
      const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::min(best, t);
      total += t;
      ++calls;
    }
    const double flops = 2.0 * double(s.m) * double(s.k) * double(s.n);
    const double gflops = flops / best / 1e9;
    peak = std::max(peak, gflops);
    if (!entries.empty()) entries += ",";
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "{\"m\":%ld,\"k\":%ld,\"n\":%ld,\"calls\":%d,\"best_ms\":%.3f,\"mean_gflops\":%.2f,\"best_gflops\":%.2f}",
                  s.m, s.k, s.n, calls, best * 1e3, flops * calls / total / 1e9, gflops);
    entries += buf;
  }
  std::printf("{\"threads\":%d,\"shapes\":[%s],\"peak_gflops\":%.2f}\n", threads, entries.c_str(), peak);
  return 0;
}
