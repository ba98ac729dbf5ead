#include "progress_reporter.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include <fmt/format.h>

#include <sluice/events.hpp>

namespace pipeline_run {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto s = static_cast<long long>(seconds + 0.5);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

namespace {

std::string human_bytes(std::uint64_t b) {
  if (b >= (1ull << 30)) return fmt::format("{:.1f} GiB", b / double(1ull << 30));
  if (b >= (1ull << 20)) return fmt::format("{:.1f} MiB", b / double(1ull << 20));
  if (b >= (1ull << 10)) return fmt::format("{:.1f} KiB", b / double(1ull << 10));
  return fmt::format("{} B", b);
}

// tqdm's clock: 00:07, 12:34, 1:02:03.
std::string clock(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto s = static_cast<long long>(seconds + 0.5);
  if (s < 3600) return fmt::format("{:02}:{:02}", s / 60, s % 60);
  return fmt::format("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60);
}

std::string rate(double r, std::string_view unit) {
  if (r >= 10000) return fmt::format("{:.1f}k {}", r / 1000, unit);
  if (r >= 100) return fmt::format("{:.0f} {}", r, unit);
  return fmt::format("{:.1f} {}", r, unit);
}

// Display columns of UTF-8 text whose characters are each one column wide (ours are).
std::size_t columns(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string cut_to_columns(std::string s, std::size_t width) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && n++ == width) {
      s.resize(i);
      break;
    }
  }
  return s;
}

std::string bar(double fraction, std::size_t width, bool unicode) {
  fraction = std::clamp(fraction, 0.0, 1.0);
  std::string out;
  if (unicode) {
    // Eighths of a cell, as tqdm draws them.
    static constexpr std::string_view kParts[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
    const auto eighths = static_cast<std::size_t>(fraction * static_cast<double>(width) * 8);
    const std::size_t full = std::min(width, eighths / 8);
    for (std::size_t i = 0; i < full; ++i) out += "█";
    std::size_t used = full;
    if (full < width && eighths % 8 != 0) {
      out += kParts[eighths % 8];
      ++used;
    }
    out.append(width - used, ' ');
  } else {
    const auto full = std::min(width, static_cast<std::size_t>(fraction * static_cast<double>(width)));
    out.append(full, '#');
    out.append(width - full, ' ');
  }
  return out;
}

}  // namespace

std::string format_progress_line(const ProgressView& v, std::size_t width, bool unicode) {
  // Fields in the order they are dropped when the line does not fit.
  enum Field { kTokens, kWritten, kBytes, kRate, kBar, kCounts, kFieldCount };
  bool show[kFieldCount];
  std::fill(std::begin(show), std::end(show), true);
  if (!v.fraction_known) show[kBar] = false;
  std::size_t bar_width = 30;
  constexpr std::size_t kMinBar = 10;

  auto compose = [&] {
    std::string line = v.phase;
    if (v.fraction_known) line += fmt::format(" {:3.0f}%", std::floor(v.fraction * 100));
    if (show[kBar]) line += "|" + bar(v.fraction, bar_width, unicode) + "|";
    if (show[kCounts] && !v.counts.empty()) {
      line += " " + v.counts;
    } else if (show[kCounts]) {
      line += fmt::format(" {} embedded", v.processed);
      if (show[kWritten]) line += fmt::format(", {} written", v.written);
    }
    if (show[kBytes]) {
      line += v.bytes_total > 0 ? fmt::format(" | {}/{}", human_bytes(v.bytes_done), human_bytes(v.bytes_total))
                                : fmt::format(" | {}", human_bytes(v.bytes_done));
    }
    line += fmt::format(" [{}<{}", clock(v.elapsed_s), v.eta_s ? clock(*v.eta_s) : "?");
    if (show[kRate]) line += ", " + rate(v.docs_per_s, v.rate_unit);
    if (show[kTokens]) line += ", " + rate(v.tokens_per_s, "tok/s");
    line += "]";
    if (v.failed > 0) line += fmt::format(" {} failed", v.failed);
    if (v.workers) line += fmt::format(" {} worker{}", *v.workers, *v.workers == 1 ? "" : "s");
    if (v.api) line += fmt::format(" API {} req, {} retr, {} tok", v.api->requests, v.api->retries, v.api->tokens_billed);
    return line;
  };

  std::string line = compose();
  int next_drop = 0;
  while (columns(line) > width) {
    if (show[kBar] && bar_width > kMinBar) {
      const std::size_t over = columns(line) - width;
      bar_width = over >= bar_width - kMinBar ? kMinBar : bar_width - over;
    } else {
      while (next_drop < kFieldCount && !show[next_drop]) ++next_drop;
      if (next_drop == kFieldCount) break;
      show[next_drop] = false;
    }
    line = compose();
  }
  return cut_to_columns(std::move(line), width);
}

std::string format_plain_line(const ProgressView& v) {
  std::string line = v.phase;
  if (v.fraction_known) line += fmt::format(" {:.1f}%", std::floor(v.fraction * 1000) / 10);
  if (!v.counts.empty()) {
    line += " | " + v.counts;
  } else {
    line += fmt::format(" | {} embedded, {} written", v.processed, v.written);
  }
  if (v.failed > 0) line += fmt::format(", {} failed", v.failed);
  line += v.bytes_total > 0 ? fmt::format(" | {} of {}", human_bytes(v.bytes_done), human_bytes(v.bytes_total))
                            : fmt::format(" | {}", human_bytes(v.bytes_done));
  line += fmt::format(" | {:.1f} {} | {:.0f} tokens/s | elapsed {}", v.docs_per_s,
                      v.rate_unit == "rec/s" ? std::string("docs/s") : v.rate_unit, v.tokens_per_s,
                      format_duration(v.elapsed_s));
  if (v.eta_s) line += fmt::format(" | ETA {}", format_duration(*v.eta_s));
  if (v.workers) line += fmt::format(" | {} worker{}", *v.workers, *v.workers == 1 ? "" : "s");
  if (v.api) {
    line += fmt::format(" | API: {} requests, {} retries, {} tokens billed, {:.1f} s throttled", v.api->requests,
                        v.api->retries, v.api->tokens_billed, v.api->throttled_s);
  }
  return line;
}

ProgressReporter::ProgressReporter(std::FILE* out, ProgressMode mode, double plain_interval_s)
    : out_(out), plain_interval_s_(plain_interval_s) {
  const bool tty = isatty(fileno(out)) == 1;
  enabled_ = mode != ProgressMode::never;
  live_ = tty && mode != ProgressMode::never;
  // Block characters where the locale says UTF-8 (as a terminal's usually does).
  unicode_ = false;
  for (const char* name : {"LC_ALL", "LC_CTYPE", "LANG"}) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') continue;
    const std::string_view s(v);
    unicode_ = s.find("UTF-8") != std::string_view::npos || s.find("utf8") != std::string_view::npos ||
               s.find("utf-8") != std::string_view::npos || s.find("UTF8") != std::string_view::npos;
    break;
  }
}

sluice::EventFilter ProgressReporter::filter() {
  return sluice::EventFilter::of<sluice::PipelineStarted, sluice::BatchProgress, sluice::DocumentFailed,
                                 sluice::PipelineFinished, sluice::WorkerJoined, sluice::WorkerLeft,
                                 sluice::WorkerRefused, sluice::BatchRedelivered, sluice::RemoteRetry,
                                 sluice::RemoteUsage>();
}

std::size_t ProgressReporter::width() const {
  winsize ws{};
  if (ioctl(fileno(out_), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS")) {
    const long n = std::strtol(c, nullptr, 10);
    if (n > 0) return static_cast<std::size_t>(n);
  }
  return 80;
}

void ProgressReporter::clear_line() {
  if (line_dirty_) {
    std::fputs("\r\033[K", out_);
    line_dirty_ = false;
  }
}

void ProgressReporter::show(const std::string& live_line, const std::string& plain_line, double ts, bool force_plain) {
  if (!enabled_) return;
  if (live_) {
    // One column short of the width: a line that fills the last column wraps on some terminals.
    const std::size_t w = width();
    fmt::print(out_, "\r\033[K{}", cut_to_columns(live_line, w > 1 ? w - 1 : 1));
    line_dirty_ = true;
    std::fflush(out_);
  } else if (force_plain || ts - last_plain_ >= plain_interval_s_) {
    last_plain_ = ts;
    fmt::print(out_, "progress: {}\n", plain_line);
    std::fflush(out_);
  }
}

void ProgressReporter::validating(std::uint64_t bytes_read, std::uint64_t bytes_total) {
  const double now = sluice::unix_time_now();
  if (validation_started_ == 0) {
    validation_started_ = now;
    last_plain_ = now;
  }
  // The live line at most 10 times a second.
  if (live_ && now - last_live_ < 0.1) return;
  last_live_ = now;
  std::string line = "validating";
  if (bytes_total > 0) {
    const double f = std::min(1.0, static_cast<double>(bytes_read) / static_cast<double>(bytes_total));
    line += fmt::format(" {:3.0f}%|{}| {}/{}", std::floor(f * 100), bar(f, 20, unicode_), human_bytes(bytes_read),
                        human_bytes(bytes_total));
  } else {
    line += fmt::format(" {}", human_bytes(bytes_read));
  }
  line += fmt::format(" [{}]", clock(now - validation_started_));
  show(line, line, now, false);
}

void ProgressReporter::loading_model(const std::string& model) {
  if (!live_) return;  // off a terminal, the started line names the model
  show(fmt::format("loading the model from {}", model), {}, sluice::unix_time_now(), false);
}

void ProgressReporter::print_progress(const sluice::BatchProgress& p, double ts) {
  ProgressView v;
  v.phase = std::string(sluice::to_string(p.phase));
  v.fraction = p.fraction;
  v.fraction_known = p.bytes_total > 0 || p.tokens_expected > 0;
  v.processed = p.processed;
  v.written = p.completed;
  v.failed = p.failed;
  v.bytes_done = p.bytes_processed;
  v.bytes_total = p.bytes_total;
  v.docs_per_s = p.docs_per_s;
  v.tokens_per_s = p.tokens_per_s;
  v.elapsed_s = p.elapsed_s;
  v.eta_s = p.eta_s;
  if (remote_) v.workers = workers_.size();
  if (api_) v.api = usage_;
  if (adjust_) adjust_(v);
  const std::size_t w = live_ ? width() : 0;
  show(live_ ? format_progress_line(v, w > 1 ? w - 1 : 1, unicode_) : std::string(), format_plain_line(v), ts,
       false);
}

void ProgressReporter::on_event(const sluice::PipelineEvent& event) {
  // --progress never still reports failed records and the final summary.
  if (std::holds_alternative<sluice::PipelineFinished>(event.payload) && !summary_) {
    clear_line();
    return;
  }
  if (!enabled_ && !std::holds_alternative<sluice::DocumentFailed>(event.payload) &&
      !std::holds_alternative<sluice::PipelineFinished>(event.payload) &&
      !std::holds_alternative<sluice::RemoteUsage>(event.payload)) {
    return;
  }
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, sluice::PipelineStarted>) {
          last_plain_ = event.timestamp;
          clear_line();
          if (!live_)
            fmt::print(out_, "started: {} -> {} with {} ({} dimensions, max {} tokens)\n", e.input, e.output, e.model,
                       e.dimensions, e.max_tokens);
        } else if constexpr (std::is_same_v<T, sluice::BatchProgress>) {
          print_progress(e, event.timestamp);
        } else if constexpr (std::is_same_v<T, sluice::WorkerJoined>) {
          workers_.insert(e.worker);
          clear_line();
          fmt::print(out_, "worker {} joined from {} ({} call{} at once); {} serving\n", e.worker, e.host, e.calls,
                     e.calls == 1 ? "" : "s", workers_.size());
        } else if constexpr (std::is_same_v<T, sluice::WorkerLeft>) {
          workers_.erase(e.worker);
          clear_line();
          fmt::print(out_, "worker {} left ({}); {} serving{}\n", e.worker, e.reason, workers_.size(),
                     workers_.empty() ? ": the run waits for a worker" : "");
        } else if constexpr (std::is_same_v<T, sluice::WorkerRefused>) {
          clear_line();
          fmt::print(out_, "note: worker {} on {} has model {}, and this run needs {}: it takes none of this run's "
                           "batches\n", e.worker, e.host, e.worker_model, e.run_model);
        } else if constexpr (std::is_same_v<T, sluice::BatchRedelivered>) {
          if (e.abandoned) {
            clear_line();
            fmt::print(out_, "note: batch {} was delivered {} times and no worker answered: its records are tried "
                             "one by one\n", e.batch, e.deliveries - 1);
          }
        } else if constexpr (std::is_same_v<T, sluice::RemoteUsage>) {
          usage_ = e;
        } else if constexpr (std::is_same_v<T, sluice::RemoteRetry>) {
          if (++retries_shown_ <= kMaxErrorLines) {
            clear_line();
            fmt::print(out_, "note: API request failed (attempt {}: {}); sending it again in {:.1f} s\n", e.attempt,
                       e.reason, e.wait_s);
          } else if (retries_shown_ == kMaxErrorLines + 1) {
            clear_line();
            fmt::print(out_, "note: further retries are not shown here; they are counted (remote_retry events)\n");
          }
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
              sluice::to_string(s.status), s.completed, s.failed, s.tokens, s.truncated, format_duration(s.elapsed_s),
              s.elapsed_s > 0 ? s.completed / s.elapsed_s : 0.0, s.elapsed_s > 0 ? s.tokens / s.elapsed_s : 0.0);
          if (api_) {
            fmt::print(out_, "remote API: {} requests ({} retries), {} inputs, {} tokens billed, {:.1f} s waiting for "
                             "rate limits\n",
                       usage_.requests, usage_.retries, usage_.inputs, usage_.tokens_billed, usage_.throttled_s);
          } else if (remote_ && s.model_calls > 0 && s.padded_tokens > 0) {
            fmt::print(out_, "NATS workers: {} {}, {} of {} padded tokens real ({:.1f}%)\n", s.model_calls,
                       s.model_calls == 1 ? "batch" : "batches", s.model_tokens, s.padded_tokens,
                       100.0 * s.model_tokens / s.padded_tokens);
          } else if (s.model_calls > 0 && s.padded_tokens > 0 && s.elapsed_s > 0) {
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
