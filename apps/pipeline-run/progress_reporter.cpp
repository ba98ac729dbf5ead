#include "progress_reporter.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace pipeline_run {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto s = static_cast<long long>(seconds + 0.5);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

static std::string human_bytes(std::uint64_t b) {
  if (b >= (1ull << 30)) return fmt::format("{:.1f} GiB", b / double(1ull << 30));
  if (b >= (1ull << 20)) return fmt::format("{:.1f} MiB", b / double(1ull << 20));
  if (b >= (1ull << 10)) return fmt::format("{:.1f} KiB", b / double(1ull << 10));
  return fmt::format("{} B", b);
}

ProgressReporter::ProgressReporter(std::FILE* out, ProgressMode mode, double plain_interval_s)
    : out_(out), plain_interval_s_(plain_interval_s) {
  const bool tty = isatty(fileno(out)) == 1;
  enabled_ = mode != ProgressMode::never;
  live_ = tty && mode != ProgressMode::never;
}

sluice::EventFilter ProgressReporter::filter() {
  return sluice::EventFilter::of<sluice::PipelineStarted, sluice::BatchProgress, sluice::DocumentFailed,
                                 sluice::PipelineFinished>();
}

void ProgressReporter::clear_line() {
  if (line_dirty_) {
    std::fputs("\r\033[K", out_);
    line_dirty_ = false;
  }
}

void ProgressReporter::print_progress(const sluice::BatchProgress& p, double ts) {
  std::string done = fmt::format("{} done", p.completed);
  if (p.failed > 0) done += fmt::format(", {} failed", p.failed);
  std::string where;
  if (p.bytes_total > 0) {
    where = fmt::format(" | {} of {} ({:.1f}%)", human_bytes(p.bytes_read), human_bytes(p.bytes_total),
                        100.0 * static_cast<double>(p.bytes_read) / static_cast<double>(p.bytes_total));
  } else {
    where = fmt::format(" | {} read", human_bytes(p.bytes_read));
  }
  std::string eta = p.eta_s ? fmt::format(" | ETA {}", format_duration(*p.eta_s)) : "";
  std::string line =
      fmt::format("{}{} | {:.1f} docs/s | {:.0f} tokens/s{}", done, where, p.docs_per_s, p.tokens_per_s, eta);
  if (live_) {
    fmt::print(out_, "\r\033[K{}", line);
    line_dirty_ = true;
    std::fflush(out_);
  } else if (ts - last_plain_ >= plain_interval_s_) {
    last_plain_ = ts;
    fmt::print(out_, "progress: {}\n", line);
    std::fflush(out_);
  }
}

void ProgressReporter::on_event(const sluice::PipelineEvent& event) {
  // --progress never still reports failed records and the final summary.
  if (!enabled_ && !std::holds_alternative<sluice::DocumentFailed>(event.payload) &&
      !std::holds_alternative<sluice::PipelineFinished>(event.payload)) {
    return;
  }
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, sluice::PipelineStarted>) {
          total_bytes_ = e.input_bytes;
          last_plain_ = event.timestamp;
          if (!live_)
            fmt::print(out_, "started: {} -> {} with {} ({} dimensions, max {} tokens)\n", e.input, e.output, e.model,
                       e.dimensions, e.max_tokens);
        } else if constexpr (std::is_same_v<T, sluice::BatchProgress>) {
          print_progress(e, event.timestamp);
        } else if constexpr (std::is_same_v<T, sluice::DocumentFailed>) {
          if (++errors_shown_ <= kMaxErrorLines) {
            clear_line();
            fmt::print(out_, "error: {}\n", e.message);
          } else if (errors_shown_ == kMaxErrorLines + 1) {
            clear_line();
            fmt::print(out_,
                       "error: further failed records are not shown here; they are counted, and kept in "
                       "the --dead-letter file and the --events stream\n");
          }
        } else if constexpr (std::is_same_v<T, sluice::PipelineFinished>) {
          clear_line();
          const auto& s = e.summary;
          fmt::print(
              out_,
              "{}: {} records embedded, {} failed, {} tokens ({} truncated) in {} ({:.1f} docs/s, {:.0f} tokens/s)\n",
              s.status, s.completed, s.failed, s.tokens, s.truncated, format_duration(s.elapsed_s),
              s.elapsed_s > 0 ? s.completed / s.elapsed_s : 0.0, s.elapsed_s > 0 ? s.tokens / s.elapsed_s : 0.0);
          if (s.model_calls > 0 && s.padded_tokens > 0 && s.elapsed_s > 0) {
            // What the model was given: padding efficiency and how busy it was kept (with
            // several concurrent calls, busy time is summed over them: W x the run at most).
            const unsigned workers = std::max(1u, s.model_workers);
            fmt::print(out_, "model: {} {}, {} of {} padded tokens real ({:.1f}%), busy {:.1f} s of {}{:.1f} s ({:.0f}%)\n",
                       s.model_calls, s.model_calls == 1 ? "batch" : "batches", s.model_tokens, s.padded_tokens,
                       100.0 * s.model_tokens / s.padded_tokens, s.model_busy_s,
                       workers > 1 ? fmt::format("{} x ", workers) : "", s.elapsed_s,
                       100.0 * s.model_busy_s / (workers * s.elapsed_s));
          }
          std::fflush(out_);
        }
      },
      event.payload);
}

}  // namespace pipeline_run
