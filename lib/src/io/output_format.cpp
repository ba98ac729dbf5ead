#include "output_format.hpp"

#include <array>
#include <bit>
#include <cstdint>
#include <cmath>
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

std::string_view to_string(VectorType type) noexcept {
  switch (type) {
    case VectorType::float32: return "float32";
    case VectorType::float16: return "float16";
    case VectorType::int8: return "int8";
    case VectorType::binary: return "binary";
  }
  return "?";
}

std::string_view to_string(VectorEncoding encoding) noexcept {
  return encoding == VectorEncoding::base64 ? "base64" : "json";
}

std::optional<VectorType> parse_vector_type(std::string_view name) noexcept {
  for (VectorType t : {VectorType::float32, VectorType::float16, VectorType::int8, VectorType::binary}) {
    if (name == to_string(t)) return t;
  }
  return std::nullopt;
}

std::optional<VectorEncoding> parse_vector_encoding(std::string_view name) noexcept {
  if (name == "json") return VectorEncoding::json;
  if (name == "base64") return VectorEncoding::base64;
  return std::nullopt;
}

std::uint16_t float_to_half(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t abs = x & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) return static_cast<std::uint16_t>(sign | (abs > 0x7F800000u ? 0x7E00u : 0x7C00u));
  if (abs >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // rounds past 65504
  if (abs < 0x38800000u) {
    // Subnormal half (or zero): the value in units of 2^-24, rounded to nearest even.
    if (abs < 0x33000000u) return sign;  // below half of the smallest subnormal
    const std::uint32_t mant = (abs & 0x7FFFFFu) | 0x800000u;
    const int shift = 126 - static_cast<int>(abs >> 23);  // value = mant x 2^(exponent - 150); in [14, 24]
    const std::uint32_t q = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1);
    const std::uint32_t halfway = 1u << (shift - 1);
    const std::uint32_t r = q + (rem > halfway || (rem == halfway && (q & 1u)) ? 1u : 0u);
    return static_cast<std::uint16_t>(sign | r);
  }
  // Normal: rebias the exponent (127 -> 15), keep 10 mantissa bits, round to nearest even;
  // a carry out of the mantissa correctly bumps the exponent.
  const std::uint32_t rebased = abs - (112u << 23);
  const std::uint32_t q = rebased >> 13;
  const std::uint32_t rem = rebased & 0x1FFFu;
  const std::uint32_t r = q + (rem > 0x1000u || (rem == 0x1000u && (q & 1u)) ? 1u : 0u);
  return static_cast<std::uint16_t>(sign | r);
}

float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1Fu;
  const std::uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13));
  if (exp == 0) {
    const float v = static_cast<float>(mant) * 0x1p-24f;
    return sign ? -v : v;
  }
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

namespace {

std::int8_t to_int8(float v) noexcept {
  if (!(v == v)) return 0;  // NaN
  const float c = v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);
  return static_cast<std::int8_t>(std::lround(c * 127.0f));
}

void append_int(std::string& out, long v) {
  char buf[8];
  auto r = fmt::format_to_n(buf, sizeof buf, "{}", v);
  out.append(buf, r.size);
}

}  // namespace

void append_vector(std::string& out, std::span<const float> embedding, VectorFormat format) {
  if (format.encoding == VectorEncoding::base64) {
    std::string bytes;
    switch (format.type) {
      case VectorType::float32:
        bytes.resize(embedding.size() * 4);
        for (std::size_t i = 0; i < embedding.size(); ++i) {
          const std::uint32_t b = std::bit_cast<std::uint32_t>(embedding[i]);
          for (int k = 0; k < 4; ++k) bytes[i * 4 + k] = static_cast<char>((b >> (8 * k)) & 0xFF);
        }
        break;
      case VectorType::float16:
        bytes.resize(embedding.size() * 2);
        for (std::size_t i = 0; i < embedding.size(); ++i) {
          const std::uint16_t b = float_to_half(embedding[i]);
          bytes[i * 2] = static_cast<char>(b & 0xFF);
          bytes[i * 2 + 1] = static_cast<char>(b >> 8);
        }
        break;
      case VectorType::int8:
        bytes.resize(embedding.size());
        for (std::size_t i = 0; i < embedding.size(); ++i) bytes[i] = static_cast<char>(to_int8(embedding[i]));
        break;
      case VectorType::binary:
        bytes.assign((embedding.size() + 7) / 8, '\0');
        for (std::size_t i = 0; i < embedding.size(); ++i) {
          if (embedding[i] > 0) bytes[i / 8] = static_cast<char>(static_cast<unsigned char>(bytes[i / 8]) | (0x80u >> (i % 8)));
        }
        break;
    }
    out.push_back('"');
    append_base64(out, bytes);
    out.push_back('"');
    return;
  }
  out.push_back('[');
  switch (format.type) {
    case VectorType::float32:
    case VectorType::float16: {
      const std::size_t base = out.size();
      out.resize(base + embedding.size() * kMaxFloatChars);
      char* const begin = out.data() + base;
      char* p = begin;
      for (std::size_t i = 0; i < embedding.size(); ++i) {
        if (i != 0) *p++ = ',';
        const float v = format.type == VectorType::float16 ? half_to_float(float_to_half(embedding[i])) : embedding[i];
        p = write_float(p, v);
      }
      out.resize(base + static_cast<std::size_t>(p - begin));
      break;
    }
    case VectorType::int8:
      for (std::size_t i = 0; i < embedding.size(); ++i) {
        if (i != 0) out.push_back(',');
        append_int(out, to_int8(embedding[i]));
      }
      break;
    case VectorType::binary:
      for (std::size_t byte = 0; byte < (embedding.size() + 7) / 8; ++byte) {
        unsigned v = 0;
        for (std::size_t i = byte * 8; i < std::min(embedding.size(), byte * 8 + 8); ++i) {
          if (embedding[i] > 0) v |= 0x80u >> (i % 8);
        }
        if (byte != 0) out.push_back(',');
        append_int(out, static_cast<long>(v));
      }
      break;
  }
  out.push_back(']');
}

void append_output_line(std::string& out, std::string_view prefix, bool empty_object,
                        std::string_view field, std::span<const float> embedding, VectorFormat format) {
  if (format.type != VectorType::float32 || format.encoding != VectorEncoding::json) {
    out.append(prefix);
    if (!empty_object) out.push_back(',');
    append_json_string(out, field);
    out.push_back(':');
    append_vector(out, embedding, format);
    out.append("}\n");
    return;
  }
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
