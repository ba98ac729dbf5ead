// Progress: what BatchProgress says, its rates and ETA.

#include "pipeline_impl.hpp"

#include <algorithm>

namespace sluice {

void Pipeline::Impl::count_processed(const WorkItem& item, bool before_model) {
  ++processed_;
  const std::uint64_t bytes = item.end_offset - item.offset;
  processed_bytes_ += bytes;
  if (before_model) {
    skipped_bytes_ += bytes;
  } else {
    processed_tokens_ += item.model_tokens;
  }
}

void Pipeline::Impl::on_progress_timer(uv_timer_t* handle) { static_cast<Impl*>(handle->data)->publish_progress(); }

void Pipeline::Impl::publish_progress() {
  const double now = unix_time_now();
  if (!bus_.wants<BatchProgress>()) return;
  const RateWindow::Rates r = rates_.rates();
  const bool finished = final_progress_ && summary_.status == RunStatus::completed;
  BatchProgress p;
  p.completed = summary_.completed;
  p.failed = summary_.failed;
  p.in_flight = in_flight_records_;
  p.bytes_read = summary_.bytes_read;
  p.bytes_total = input_size_;
  p.tokens = summary_.tokens;
  p.docs_per_s = r.docs;
  p.tokens_per_s = r.tokens;
  p.bytes_per_s = r.bytes;
  // Draining: every record read has been through the model; writing and syncing remain.
  if (final_progress_) {
    p.phase = summary_.status == RunStatus::completed ? RunPhase::finished
              : summary_.status == RunStatus::stopped ? RunPhase::stopped
                                                      : RunPhase::failed;
  } else if (finishing_) {
    p.phase = RunPhase::finishing;
  } else {
    p.phase = eof_ && processed_ == summary_.records_read - resumed_records_ ? RunPhase::draining : RunPhase::embedding;
  }
  p.processed = resumed_records_ + processed_;
  p.bytes_processed = resumed_bytes_ + processed_bytes_;
  p.tokens_processed = resumed_tokens_ + processed_tokens_;
  p.elapsed_s = now - start_time_;

  // The work left, in tokens, the unit model time follows: those the tokenizer has counted
  // and the model not yet embedded, plus the input not yet tokenized at the tokens a byte seen
  // so far. The input's end is its size, or once read (stdin), where reading ended.
  const EmbedWorkers::Tokenized t = workers_ ? workers_->tokenized() : EmbedWorkers::Tokenized{};
  const std::uint64_t end = eof_ ? summary_.bytes_read : input_size_;
  std::optional<double> tokens_left;
  if (end > 0 && t.bytes > 0) {
    const std::uint64_t accounted = resumed_bytes_ + t.bytes + skipped_bytes_;
    const double unknown_bytes = end > accounted ? static_cast<double>(end - accounted) : 0.0;
    const double known = t.tokens > processed_tokens_ ? static_cast<double>(t.tokens - processed_tokens_) : 0.0;
    tokens_left = known + unknown_bytes * (static_cast<double>(t.tokens) / static_cast<double>(t.bytes));
  }
  if (tokens_left) {
    const double done = static_cast<double>(p.tokens_processed);
    p.tokens_expected = static_cast<std::uint64_t>(done + *tokens_left + 0.5);
    p.fraction = done + *tokens_left > 0 ? done / (done + *tokens_left) : 0.0;
  } else if (end > 0) {
    p.fraction = static_cast<double>(p.bytes_processed) / static_cast<double>(end);
  }
  // 100 % is said once, at the end.
  p.fraction = finished ? 1.0 : std::min(p.fraction, 0.999);
  if (finished) {
    p.eta_s = 0.0;
  } else if (tokens_left && r.tokens > 0 && r.over_s >= 2.0) {
    // Meaningful once the rate has been measured over two seconds of model work after the
    // first call. The calls running now are partly done: the time since the last results counts.
    p.eta_s = std::max(0.0, *tokens_left / r.tokens - (now - rates_.last_t()));
  }
  bus_.publish(std::move(p));
}

}  // namespace sluice
