#include "output_format.hpp"

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>

#include <fmt/format.h>
#include <simdjson.h>

#include "core/json_writer.hpp"

// Shortest float digits come from fmt's Dragonbox (fmt::detail::dragonbox::to_decimal, in fmt
// since 7.1). The unit test checks the result against fmt::format("{}") on many floats.
static_assert(FMT_VERSION >= 70100, "fmt 7.1 or newer is required");

namespace sluice {

namespace {

// Length of the well-formed UTF-8 sequence at p (Unicode table 3-7), 0 when there is none.
std::size_t utf8_sequence_length(const unsigned char* p, std::size_t n) noexcept {
  const unsigned char c = p[0];
  if (c < 0x80) return 1;
  auto cont = [&](std::size_t k, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return k < n && p[k] >= lo && p[k] <= hi;
  };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

void append_base64(std::string& out, std::string_view s) {
  constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  out.reserve(out.size() + (n + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const std::uint32_t v = (std::uint32_t{p[i]} << 16) | (std::uint32_t{p[i + 1]} << 8) | p[i + 2];
    const char quad[4] = {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63],
                          kAlphabet[v & 63]};
    out.append(quad, 4);
  }
  if (n - i == 1) {
    const std::uint32_t v = std::uint32_t{p[i]} << 16;
    const char quad[4] = {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], '=', '='};
    out.append(quad, 4);
  } else if (n - i == 2) {
    const std::uint32_t v = (std::uint32_t{p[i]} << 16) | (std::uint32_t{p[i + 1]} << 8);
    const char quad[4] = {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63],
                          '='};
    out.append(quad, 4);
  }
}

// The longest number written, comma included: "-1234567800000000," (a float below 1e16 written
// without exponent has at most 16 digits) or "-1.2345678e-38,".
constexpr std::size_t kMaxFloatChars = 18;

constexpr char kDigitPairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

// Writes the decimal digits of v (v < 10^10) to the end of buf[0, 10); returns the first one.
char* write_digits_backward(char* end, std::uint32_t v) noexcept {
  char* p = end;
  while (v >= 100) {
    const std::uint32_t pair = (v % 100) * 2;
    v /= 100;
    p -= 2;
    p[0] = kDigitPairs[pair];
    p[1] = kDigitPairs[pair + 1];
  }
  if (v >= 10) {
    p -= 2;
    p[0] = kDigitPairs[v * 2];
    p[1] = kDigitPairs[v * 2 + 1];
  } else {
    *--p = static_cast<char>('0' + v);
  }
  return p;
}

// Writes f as JSON: the shortest digits that read back as f (fmt's Dragonbox), laid out as
// fmt's "{}" lays them out (fixed notation for exponents in [-4, 16), else d.ddde+XX), or
// `null` for NaN and infinities. Returns the end of what was written (at most kMaxFloatChars
// - 1 bytes).
char* write_float(char* p, float f) noexcept {
  std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
  if ((bits & 0x7F800000u) == 0x7F800000u) {
    std::memcpy(p, "null", 4);
    return p + 4;
  }
  if (bits >> 31) {
    *p++ = '-';
    bits &= 0x7FFFFFFFu;
  }
  if (bits == 0) {
    *p++ = '0';
    return p;
  }
  const auto dec = fmt::detail::dragonbox::to_decimal(std::bit_cast<float>(bits));
  char digits[10];
  const char* first = write_digits_backward(digits + 10, dec.significand);
  const int n = static_cast<int>(digits + 10 - first);
  const int e = dec.exponent;
  int out_exp = e + n - 1;
  if (out_exp < -4 || out_exp >= 16) {
    *p++ = first[0];
    if (n > 1) {
      *p++ = '.';
      std::memcpy(p, first + 1, static_cast<std::size_t>(n - 1));
      p += n - 1;
    }
    *p++ = 'e';
    if (out_exp < 0) {
      *p++ = '-';
      out_exp = -out_exp;
    } else {
      *p++ = '+';
    }
    // A float's decimal exponent lies in [-45, 38]: two digits.
    p[0] = kDigitPairs[out_exp * 2];
    p[1] = kDigitPairs[out_exp * 2 + 1];
    return p + 2;
  }
  if (e >= 0) {  // 1234e2 -> 123400
    std::memcpy(p, first, static_cast<std::size_t>(n));
    p += n;
    std::memset(p, '0', static_cast<std::size_t>(e));
    return p + e;
  }
  if (out_exp >= 0) {  // 1234e-2 -> 12.34
    const int whole = n + e;
    std::memcpy(p, first, static_cast<std::size_t>(whole));
    p += whole;
    *p++ = '.';
    std::memcpy(p, first + whole, static_cast<std::size_t>(n - whole));
    return p + (n - whole);
  }
  // 1234e-6 -> 0.001234
  *p++ = '0';
  *p++ = '.';
  const int zeros = -(n + e);
  std::memset(p, '0', static_cast<std::size_t>(zeros));
  p += zeros;
  std::memcpy(p, first, static_cast<std::size_t>(n));
  return p + n;
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) { json::append_string(out, s); }

std::size_t find_invalid_utf8(std::string_view s) noexcept {
  if (simdjson::validate_utf8(s.data(), s.size())) return s.size();
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t len = utf8_sequence_length(p + i, s.size() - i);
    if (len == 0) return i;
    i += len;
  }
  return s.size();
}

void append_output_line(std::string& out, std::string_view prefix, bool empty_object,
                        std::string_view field, std::span<const float> embedding) {
  out.reserve(out.size() + prefix.size() + field.size() + 8 + embedding.size() * kMaxFloatChars);
  out.append(prefix);
  if (!empty_object) out.push_back(',');
  append_json_string(out, field);
  out.append(":[");
  // Numbers are written straight into the string: size it for the longest, then trim.
  const std::size_t base = out.size();
  out.resize(base + embedding.size() * kMaxFloatChars + 3);
  char* const begin = out.data() + base;
  char* p = begin;
  for (std::size_t i = 0; i < embedding.size(); ++i) {
    if (i != 0) *p++ = ',';
    p = write_float(p, embedding[i]);
  }
  std::memcpy(p, "]}\n", 3);
  p += 3;
  out.resize(base + static_cast<std::size_t>(p - begin));
}

void append_dead_letter_line(std::string& out, const InputLocation& where, const ErrorInfo& error,
                             std::string_view raw_line) {
  out.append("{\"file\":");
  append_json_string(out, where.file);
  out.append(",\"line\":");
  json::append_uint(out, where.line);
  out.append(",\"offset\":");
  json::append_uint(out, where.offset);
  out.append(",\"error\":");
  append_json_string(out, error_name(error.code));
  out.append(",\"field\":");
  if (error.field.empty()) {
    out.append("null");
  } else {
    append_json_string(out, error.field);
  }
  out.append(",\"message\":");
  append_json_string(out, error.message);
  if (simdjson::validate_utf8(raw_line.data(), raw_line.size())) {
    out.append(",\"record\":");
    append_json_string(out, raw_line);
  } else {
    out.append(",\"record_base64\":\"");
    append_base64(out, raw_line);
    out.push_back('"');
  }
  out.append("}\n");
}

}  // namespace sluice
