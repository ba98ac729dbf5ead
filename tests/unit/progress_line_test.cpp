#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "progress_reporter.hpp"

using namespace pipeline_run;

namespace {

std::size_t columns(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

ProgressView sample() {
  ProgressView v;
  v.phase = "embedding";
  v.fraction = 0.374;
  v.fraction_known = true;
  v.processed = 965;
  v.written = 3;
  v.failed = 2;
  v.bytes_done = 320 << 10;
  v.bytes_total = 1363148;
  v.docs_per_s = 70.8;
  v.tokens_per_s = 9394;
  v.elapsed_s = 8;
  v.eta_s = 13;
  return v;
}

}  // namespace

TEST_CASE("a wide terminal shows every field, tqdm-like") {
  const std::string line = format_progress_line(sample(), 160, true);
  CHECK(line == "embedding  37%|███████████▏                  | 965 embedded, 3 written | 320.0 KiB/1.3 MiB "
                "[00:08<00:13, 70.8 rec/s, 9394 tok/s] 2 failed");
  // 130 columns, as a tmux pane: the bar shrinks to fit, every field stays.
  const std::string at130 = format_progress_line(sample(), 130, true);
  CHECK(columns(at130) == 130);
  CHECK(at130.find("9394 tok/s] 2 failed") != std::string::npos);
}

TEST_CASE("the line never passes the width: the bar shrinks, then fields go in order") {
  for (std::size_t width = 1; width <= 160; ++width) {
    for (bool unicode : {true, false}) {
      const std::string line = format_progress_line(sample(), width, unicode);
      CHECK_MESSAGE(columns(line) <= width, width);
      CHECK(line.find('\n') == std::string::npos);
    }
  }
  const std::string at80 = format_progress_line(sample(), 80, false);
  CHECK(at80.find("tok/s") == std::string::npos);   // dropped first
  CHECK(at80.find("embedded") != std::string::npos);
  CHECK(at80.find("<00:13") != std::string::npos);  // elapsed and remaining stay
  CHECK(at80.find("2 failed") != std::string::npos);
  const std::string at50 = format_progress_line(sample(), 50, false);
  CHECK(at50.rfind("embedding  37%", 0) == 0);
  CHECK(at50.find("<00:13") != std::string::npos);
}

TEST_CASE("no percentage or bar without a total; ? until the ETA is known") {
  ProgressView v = sample();
  v.fraction_known = false;
  v.bytes_total = 0;
  v.eta_s.reset();
  const std::string line = format_progress_line(v, 130, true);
  CHECK(line.find('%') == std::string::npos);
  CHECK(line.find('|') != std::string::npos);  // the bytes separator only
  CHECK(line.find("<?") != std::string::npos);
  CHECK(format_plain_line(v).find("ETA") == std::string::npos);
}

TEST_CASE("the bar is exact in eighths and full only at 100 %") {
  ProgressView v = sample();
  v.failed = 0;
  v.fraction = 0.999;
  CHECK(format_progress_line(v, 200, false).find("|##############################|") == std::string::npos);
  v.fraction = 1.0;
  CHECK(format_progress_line(v, 200, false).find("|##############################|") != std::string::npos);
  CHECK(format_plain_line(v).find("100.0%") != std::string::npos);
  v.fraction = 0.9999;
  CHECK(format_plain_line(v).find("99.9%") != std::string::npos);
}
