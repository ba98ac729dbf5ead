// The unit tests' main: doctest's, plus a way for a test program to report that this host
// cannot run what it tests (meson counts exit status 77 as a skip, shown as SKIP).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "test_skip.hpp"

namespace {
std::string& skip_reason() {
  static std::string reason;
  return reason;
}
}  // namespace

namespace sluice::test {
void skip_program(const std::string& reason) {
  if (skip_reason().empty()) skip_reason() = reason;
}
}  // namespace sluice::test

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int status = context.run();
  if (context.shouldExit()) return status;
  if (status == 0 && !skip_reason().empty()) {
    std::fprintf(stderr, "SKIP: %s\n", skip_reason().c_str());
    return 77;
  }
  return status;
}
