#pragma once
// A test program whose subject cannot run on this host calls skip_program(reason): if nothing
// failed, the program prints "SKIP: reason" and exits 77, which meson reports as SKIP, never
// as a pass. (test_main.cpp)

#include <string>

namespace sluice::test {

/// Whether this test binary runs under AddressSanitizer or ThreadSanitizer (10 to 20 times
/// slower): tests that are heavy on purpose use smaller inputs there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif

void skip_program(const std::string& reason);
}  // namespace sluice::test
