#include <algorithm>
#include <thread>

#include <sluice/pipeline.hpp>

namespace sluice {

ThreadLayout model_thread_layout(int threads, int workers, bool concurrent) {
  const int cores = threads > 0 ? threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  if (!concurrent) return ThreadLayout{1, cores};
  if (workers > 0) {
    const int w = std::min(workers, cores);
    return ThreadLayout{w, cores / w};
  }
  constexpr int kMaxAutoWorkers = 8;
  const int per_worker = (cores + kMaxAutoWorkers - 1) / kMaxAutoWorkers;
  return ThreadLayout{cores / per_worker, per_worker};
}

}  // namespace sluice
