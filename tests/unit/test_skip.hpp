#pragma once
// A test program whose subject cannot run on this host calls skip_program(reason): if nothing
// failed, the program prints "SKIP: reason" and exits 77, which meson reports as SKIP, never
// as a pass. (test_main.cpp)

#include <string>

namespace sluice::test {
void skip_program(const std::string& reason);
}  // namespace sluice::test
