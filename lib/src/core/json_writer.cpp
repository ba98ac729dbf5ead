#include "core/json_writer.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <iterator>

#include <fmt/compile.h>
#include <fmt/format.h>

namespace sluice::json {

namespace {

// What append_string() does with a byte: copy it, escape it, or check the UTF-8 sequence
// that it starts.
enum ByteClass : unsigned char { kCopy = 0, kEscape = 1, kNonAscii = 2 };

constexpr std::array<unsigned char, 256> make_byte_classes() {
  std::array<unsigned char, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = kEscape;
  t['"'] = kEscape;
  t['\\'] = kEscape;
  for (int c = 0x80; c < 0x100; ++c) t[c] = kNonAscii;
  return t;
}
constexpr std::array<unsigned char, 256> kByteClass = make_byte_classes();

void append_escape(std::string& out, unsigned char c) {
  switch (c) {
    case '"': out.append("\\\"", 2); return;
    case '\\': out.append("\\\\", 2); return;
    case '\b': out.append("\\b", 2); return;
    case '\f': out.append("\\f", 2); return;
    case '\n': out.append("\\n", 2); return;
    case '\r': out.append("\\r", 2); return;
    case '\t': out.append("\\t", 2); return;
    default: {
      constexpr char kHex[] = "0123456789abcdef";
      const char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
      out.append(esc, 6);
    }
  }
}

// The UTF-8 sequence starting at p[0] (a byte >= 0x80), with n >= 1 bytes available.
// Returns {length, true} for a well-formed sequence (Unicode table 3-7), or {length, false}
// where length is that of the maximal ill-formed subpart (at least 1): the lead byte plus the
// continuation bytes that were still allowed, each such subpart becoming one U+FFFD.
struct Sequence {
  std::size_t length;
  bool valid;
};

Sequence check_sequence(const unsigned char* p, std::size_t n) noexcept {
  const unsigned char c = p[0];
  std::size_t need;                // continuation bytes after the lead byte
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the first continuation byte
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c == 0xE0) {
    need = 2, lo = 0xA0;
  } else if (c == 0xED) {
    need = 2, hi = 0x9F;
  } else if (c >= 0xE1 && c <= 0xEF) {
    need = 2;
  } else if (c == 0xF0) {
    need = 3, lo = 0x90;
  } else if (c == 0xF4) {
    need = 3, hi = 0x8F;
  } else if (c >= 0xF1 && c <= 0xF3) {
    need = 3;
  } else {
    return {1, false};  // 0x80..0xC1 (continuation or overlong lead) or 0xF5..0xFF
  }
  for (std::size_t k = 1; k <= need; ++k) {
    if (k >= n) return {k, false};  // truncated at the end of the text
    const unsigned char b = p[k];
    const bool ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return {k, false};
  }
  return {need + 1, true};
}

constexpr double kPow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

// append_fixed() for a finite value and decimals <= 9, in integer arithmetic, when that gives
// exactly what fmt's "{:.Nf}" gives (the exact decimal value rounded half to even, like
// printf): when |value| < 2^53 and its fractional part times 10^decimals is exact in a double.
// That holds for the timestamps events carry (about 2^31 s, so 22 fractional bits), where it
// is several times faster than fmt's general algorithm. Returns false, writing nothing,
// otherwise.
bool append_fixed_exact(std::string& out, double value, int decimals) {
  const double magnitude = std::fabs(value);
  if (!(magnitude < 9007199254740992.0)) return false;  // 2^53
  double whole = std::floor(magnitude);
  const double fraction = magnitude - whole;  // exact
  const double scale = kPow10[decimals];
  const double scaled = fraction * scale;
  if (std::fma(fraction, scale, -scaled) != 0) return false;  // the product was rounded
  double units = std::floor(scaled);
  const double rest = scaled - units;  // exact
  // Half to even: the parity of the last digit kept, the integer part's when decimals is 0.
  const double last_digit = decimals == 0 ? whole : units;
  if (rest > 0.5 || (rest == 0.5 && std::fmod(last_digit, 2.0) != 0)) units += 1;
  if (units >= scale) {  // 0.9999996 -> 1.000000
    units -= scale;
    whole += 1;
  }
  char buf[48];
  char* p = buf;
  if (std::signbit(value)) *p++ = '-';
  p = std::to_chars(p, buf + sizeof buf, static_cast<std::uint64_t>(whole)).ptr;
  if (decimals > 0) {
    *p++ = '.';
    auto digits = static_cast<std::uint32_t>(units);
    for (int k = decimals - 1; k >= 0; --k) {
      p[k] = static_cast<char>('0' + digits % 10);
      digits /= 10;
    }
    p += decimals;
  }
  out.append(buf, static_cast<std::size_t>(p - buf));
  return true;
}

}  // namespace

void append_string(std::string& out, std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  out.reserve(out.size() + n + 2);
  out.push_back('"');
  std::size_t run = 0;  // start of the bytes not yet appended
  std::size_t i = 0;
  while (i < n) {
    const unsigned char cls = kByteClass[p[i]];
    if (cls == kCopy) {
      ++i;
      continue;
    }
    if (cls == kNonAscii) {
      const Sequence seq = check_sequence(p + i, n - i);
      if (seq.valid) {
        i += seq.length;  // copied with the run
        continue;
      }
      out.append(text.data() + run, i - run);
      out.append("\xEF\xBF\xBD", 3);  // U+FFFD
      i += seq.length;
      run = i;
      continue;
    }
    out.append(text.data() + run, i - run);
    append_escape(out, p[i]);
    ++i;
    run = i;
  }
  out.append(text.data() + run, n - run);
  out.push_back('"');
}

bool is_valid_utf8(std::string_view text) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const Sequence seq = check_sequence(p + i, n - i);
    if (!seq.valid) return false;
    i += seq.length;
  }
  return true;
}

void append_double(std::string& out, double value) {
  if (!std::isfinite(value)) {
    out.append("null", 4);
    return;
  }
  char buf[32];  // the longest shortest form, "-2.2250738585072014e-308", has 24 chars
  char* end = fmt::format_to(buf, FMT_COMPILE("{}"), value);
  out.append(buf, static_cast<std::size_t>(end - buf));
}

void append_fixed(std::string& out, double value, int decimals) {
  if (!std::isfinite(value)) {
    out.append("null", 4);
    return;
  }
  decimals = decimals < 0 ? 0 : decimals > 17 ? 17 : decimals;
  if (decimals <= 9 && append_fixed_exact(out, value, decimals)) return;
  fmt::format_to(std::back_inserter(out), FMT_COMPILE("{:.{}f}"), value, decimals);
}

void append_uint(std::string& out, std::uint64_t value) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, static_cast<std::size_t>(r.ptr - buf));
}

void append_int(std::string& out, std::int64_t value) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, static_cast<std::size_t>(r.ptr - buf));
}

}  // namespace sluice::json
