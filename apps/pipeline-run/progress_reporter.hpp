#pragma once
// The terminal reporter: a live status line on a terminal, periodic plain lines otherwise,
// and the final summary. Subscribes to events; runs on the loop thread. Before the pipeline
// runs, pipeline-run reports its own phases through it: validating, loading the model.

#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <sluice/events.hpp>

namespace pipeline_run {

enum class ProgressMode { automatic, always, never };

/// What one progress line shows; format_progress_line() lays it out.
struct ProgressView {
  std::string phase;               // "embedding", "draining", ...
  double fraction = 0;             // 0 to 1
  bool fraction_known = false;     // false: no percentage or bar (input size unknown)
  std::uint64_t processed = 0;     // records through the model
  std::uint64_t written = 0;       // records written
  std::uint64_t failed = 0;
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;   // 0: unknown
  double docs_per_s = 0;
  double tokens_per_s = 0;
  double elapsed_s = 0;
  std::optional<double> eta_s;
  /// Set by a command with counts of its own (index: files and chunks): shown in place of
  /// "N embedded, M written", with docs_per_s in `rate_unit`.
  std::string counts;
  std::string rate_unit = "rec/s";
  std::optional<std::size_t> workers;  // NATS workers serving the run (embed --nats)
  std::optional<sluice::RemoteUsage> api;  // a remote API's requests so far (embed --remote)
};

/// The live line, tqdm-like, in at most `width` columns (display columns, not bytes): phase,
/// percentage, bar, counts, bytes, [elapsed<remaining, rates], failures. When it does not fit,
/// the bar shrinks, then fields are dropped (tokens/s, written, bytes, records/s, the bar,
/// the counts), and what is left is cut: it never wraps. `unicode`: the bar in block characters.
std::string format_progress_line(const ProgressView& v, std::size_t width, bool unicode);
/// The same fields as one plain line, for logs.
std::string format_plain_line(const ProgressView& v);

class ProgressReporter {
 public:
  /// Writes to `out` (stderr). `mode`: automatic = live line when `out` is a terminal,
  /// plain lines every `plain_interval_s` otherwise.
  ProgressReporter(std::FILE* out, ProgressMode mode, double plain_interval_s = 10.0);

  /// The kinds this reporter needs (never the per-document ones).
  static sluice::EventFilter filter();
  void on_event(const sluice::PipelineEvent& event);

  /// pipeline-run's own phases before the run: the validation pass (bytes read of total) and
  /// loading the model. Live on a terminal; off one, validation prints a line every interval.
  void validating(std::uint64_t bytes_read, std::uint64_t bytes_total);
  void loading_model(const std::string& model);
  /// Clears a live line (before other output).
  void clear_line();
  /// A command's own counts and rate, filled into each progress line's view (index).
  void set_adjust(std::function<void(ProgressView&)> adjust) { adjust_ = std::move(adjust); }
  /// Without the run's final summary lines (a command that prints its own).
  void set_summary(bool on) { summary_ = on; }
  /// The model runs on NATS workers: the line shows how many serve the run, and their joining
  /// and leaving is said.
  void set_remote(bool on) { remote_ = on; }
  /// The model is a remote API: the line shows its requests, retries and tokens billed;
  /// retries are said (the first few), and the summary gives what was billed.
  void set_api(bool on) { api_ = on; }

 private:
  void print_progress(const sluice::BatchProgress& p, double ts);
  void show(const std::string& live_line, const std::string& plain_line, double ts, bool force_plain);
  std::size_t width() const;

  std::FILE* out_;
  std::function<void(ProgressView&)> adjust_;
  bool summary_ = true;
  bool remote_ = false;
  bool api_ = false;
  sluice::RemoteUsage usage_;
  std::uint64_t retries_shown_ = 0;
  std::set<std::string> workers_;
  bool live_;
  bool enabled_;
  bool unicode_;
  double plain_interval_s_;
  double last_plain_ = 0;
  double last_live_ = 0;
  double validation_started_ = 0;
  bool line_dirty_ = false;
  std::uint64_t errors_shown_ = 0;
  static constexpr std::uint64_t kMaxErrorLines = 20;
};

std::string format_duration(double seconds);

}  // namespace pipeline_run
