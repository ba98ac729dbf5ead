#pragma once
// The terminal reporter: a live status line on a terminal, periodic plain lines otherwise,
// and the final summary. Subscribes to events; runs on the loop thread.

#include <cstdio>
#include <string>

#include <sluice/events.hpp>

namespace pipeline_run {

enum class ProgressMode { automatic, always, never };

class ProgressReporter {
 public:
  /// Writes to `out` (stderr). `mode`: automatic = live line when `out` is a terminal,
  /// plain lines every `plain_interval_s` otherwise.
  ProgressReporter(std::FILE* out, ProgressMode mode, double plain_interval_s = 10.0);

  /// The kinds this reporter needs (never the per-document ones).
  static sluice::EventFilter filter();
  void on_event(const sluice::PipelineEvent& event);

 private:
  void print_progress(const sluice::BatchProgress& p, double ts);
  void clear_line();

  std::FILE* out_;
  bool live_;
  bool enabled_;
  double plain_interval_s_;
  double last_plain_ = 0;
  bool line_dirty_ = false;
  std::uint64_t total_bytes_ = 0;
  std::uint64_t errors_shown_ = 0;
  static constexpr std::uint64_t kMaxErrorLines = 20;
};

std::string format_duration(double seconds);

}  // namespace pipeline_run
