#include <doctest/doctest.h>

#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <simdjson.h>

#include "io/output_format.hpp"

using sluice::ErrorCode;
using sluice::append_vector;
using sluice::float_to_half;
using sluice::half_to_float;
using sluice::VectorEncoding;
using sluice::VectorFormat;
using sluice::VectorType;

namespace {

std::string json_string(std::string_view s) {
  std::string out;
  sluice::append_json_string(out, s);
  return out;
}

std::string one_float(float f) {
  std::string out;
  sluice::append_output_line(out, "{", true, "e", std::span<const float>(&f, 1));
  // {"e":[<number>]}\n
  REQUIRE(out.size() >= 10);
  return out.substr(6, out.size() - 6 - 3);
}

// RFC 8259 number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
bool is_json_number(std::string_view s) {
  std::size_t i = 0;
  auto digit = [&](std::size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '9'; };
  if (i < s.size() && s[i] == '-') ++i;
  if (i < s.size() && s[i] == '0') {
    ++i;
  } else if (digit(i)) {
    while (digit(i)) ++i;
  } else {
    return false;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  return i == s.size();
}

// Significant digits of a decimal number text ("1.25e-05" -> 3, "100" -> 1, "0.0001" -> 1).
int significant_digits(std::string_view s) {
  std::string digits;
  for (char c : s) {
    if (c == 'e' || c == 'E') break;
    if (c >= '0' && c <= '9') digits += c;
  }
  const auto first = digits.find_first_not_of('0');
  if (first == std::string::npos) return 1;
  const auto last = digits.find_last_not_of('0');
  return static_cast<int>(last - first + 1);
}

}  // namespace

TEST_CASE("append_json_string escapes per RFC 8259") {
  CHECK(json_string("") == "\"\"");
  CHECK(json_string("plain text") == "\"plain text\"");
  CHECK(json_string("q\"b\\s/") == R"("q\"b\\s/")");
  CHECK(json_string("\b\f\n\r\t") == R"("\b\f\n\r\t")");
  CHECK(json_string(std::string_view("\0", 1)) == R"("\u0000")");
  CHECK(json_string("\x01\x1f\x0b") == R"("\u0001\u001f\u000b")");
  // DEL and non-ASCII UTF-8 are copied as is.
  CHECK(json_string("\x7f" "caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x80\xA8") ==
        "\"\x7f" "caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x80\xA8\"");
  // Every control character, checked against simdjson's unescaping.
  std::string all;
  for (int c = 0; c < 0x80; ++c) all += static_cast<char>(c);
  const std::string doc = "{\"s\":" + json_string(all) + "}";
  simdjson::dom::parser parser;
  std::string_view back;
  REQUIRE(parser.parse(doc)["s"].get_string().get(back) == simdjson::SUCCESS);
  CHECK(back == all);
}

TEST_CASE("floats are the shortest text that reads back as the same float") {
  CHECK(one_float(1.0f) == "1");
  CHECK(one_float(-0.0f) == "-0");
  CHECK(std::signbit(std::strtof(one_float(-0.0f).c_str(), nullptr)));
  CHECK(one_float(0.0f) == "0");
  CHECK(one_float(0.1f) == "0.1");
  CHECK(one_float(0.3f) == "0.3");
  CHECK(one_float(-0.25f) == "-0.25");
  CHECK(one_float(1e-5f) == "1e-05");
  CHECK(one_float(123456.79f) == "123456.79");
  CHECK(one_float(std::numeric_limits<float>::max()) == "3.4028235e+38");
  CHECK(one_float(std::numeric_limits<float>::min()) == "1.1754944e-38");
  CHECK(one_float(std::numeric_limits<float>::denorm_min()) == "1e-45");
  CHECK(one_float(16777216.0f) == "16777216");
  CHECK(one_float(1e15f) == "1000000000000000");
  CHECK(one_float(0.0001f) == "0.0001");
  CHECK(one_float(-9.99e-5f) == "-9.99e-05");
  CHECK(one_float(1.5e-10f) == "1.5e-10");
  CHECK(one_float(123.0f) == "123");
  CHECK(one_float(1e16f) == "1e+16");
  CHECK(one_float(std::nextafter(1e16f, 0.0f)) == "9999999000000000");

  // The layout is fmt's "{}" (fmt is the reference here: we take only its digits).
  for (float f : {1e-4f, 9.999999e-5f, 1e-5f, 0.5f, 1.0f, 10.0f, 1e15f, 9.999999e15f, 1e16f,
                  -1e16f, 3e38f, 1e-38f, 1e-40f, 1e-45f, 0.00123f, 12345678.0f, 123456789.0f,
                  1.17549435e-38f, 2.5f, -0.0f}) {
    CAPTURE(f);
    CHECK(one_float(f) == fmt::format("{}", f));
  }

  // Random bit patterns over the whole float range, and typical embedding values: each text is
  // a JSON number, reads back to the same bits, and has as few digits as std::to_chars (an
  // independent shortest round-trip implementation).
  std::mt19937 rng(12345);
  std::uniform_int_distribution<std::uint32_t> bits;
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (int i = 0; i < 200000; ++i) {
    float f = (i % 2 == 0) ? std::bit_cast<float>(bits(rng)) : normal(rng);
    if (!std::isfinite(f)) continue;
    const std::string text = one_float(f);
    CAPTURE(text);
    REQUIRE(is_json_number(text));
    REQUIRE(text == fmt::format("{}", f));
    REQUIRE(text.size() < 18);  // kMaxFloatChars, comma included
    const float back = std::strtof(text.c_str(), nullptr);
    REQUIRE(std::bit_cast<std::uint32_t>(back) == std::bit_cast<std::uint32_t>(f));
    char ref[64];
    const auto res = std::to_chars(ref, ref + sizeof ref, f, std::chars_format::scientific);
    REQUIRE(significant_digits(text) ==
            significant_digits(std::string_view(ref, static_cast<std::size_t>(res.ptr - ref))));
  }
}

TEST_CASE("NaN and infinities are written as null") {
  CHECK(one_float(std::numeric_limits<float>::quiet_NaN()) == "null");
  CHECK(one_float(std::numeric_limits<float>::infinity()) == "null");
  CHECK(one_float(-std::numeric_limits<float>::infinity()) == "null");
}

TEST_CASE("append_output_line: prefix, comma, field, numbers, brace, newline") {
  const float v[] = {0.5f, -1.0f, 1e-5f};
  std::string out = "previous\n";
  sluice::append_output_line(out, R"({"text":"a")", false, "embedding", v);
  CHECK(out == "previous\n" R"({"text":"a","embedding":[0.5,-1,1e-05]})" "\n");

  out.clear();
  sluice::append_output_line(out, "{ ", true, "vec", v);
  CHECK(out == R"({ "vec":[0.5,-1,1e-05]})" "\n");

  out.clear();
  sluice::append_output_line(out, R"({"a":1)", false, "e", {});
  CHECK(out == R"({"a":1,"e":[]})" "\n");

  // A field name that needs escaping.
  out.clear();
  sluice::append_output_line(out, R"({"a":1)", false, "we\"ird", std::span<const float>(v, 1));
  CHECK(out == R"({"a":1,"we\"ird":[0.5]})" "\n");
}

TEST_CASE("an output line of 384 values parses back to the same floats") {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> v(384);
  for (auto& f : v) f = normal(rng);
  v[0] = -0.0f;
  v[1] = 1.0f;
  v[2] = 1e-30f;
  std::string out;
  sluice::append_output_line(out, R"({"text":"hi","n":1e400)", false, "embedding", v);
  REQUIRE(out.back() == '\n');
  // simdjson rejects 1e400, so check the array on its own.
  const auto start = out.find('[');
  const std::string array = out.substr(start, out.size() - 2 - start);
  simdjson::dom::parser parser;
  simdjson::dom::array parsed;
  REQUIRE(parser.parse(array).get_array().get(parsed) == simdjson::SUCCESS);
  REQUIRE(parsed.size() == v.size());
  std::size_t i = 0;
  for (simdjson::dom::element e : parsed) {
    double d = 0;
    REQUIRE(e.get_double().get(d) == simdjson::SUCCESS);
    // Value equality: simdjson reads "-0" as the integer 0 (strtof keeps the sign, see above).
    CHECK(static_cast<float>(d) == v[i]);
    ++i;
  }
  CHECK(out.substr(0, start) == R"({"text":"hi","n":1e400,"embedding":)");
}

TEST_CASE("dead-letter line, exactly as documented") {
  sluice::InputLocation where{"in/data.jsonl", 1284, 99123};
  sluice::ErrorInfo error{ErrorCode::missing_field, R"(field "text" is missing)", "text", "debug"};
  std::string out;
  sluice::append_dead_letter_line(out, where, error, R"({"body":"x\ty"})");
  CHECK(out ==
        R"({"file":"in/data.jsonl","line":1284,"offset":99123,"error":"missing_field",)"
        R"("field":"text","message":"field \"text\" is missing","record":"{\"body\":\"x\\ty\"}"})"
        "\n");

  // No field: null. A raw line with control characters is escaped.
  out.clear();
  sluice::ErrorInfo json_error{ErrorCode::invalid_json, "invalid JSON: x", {}, {}};
  sluice::append_dead_letter_line(out, {"-", 1, 0}, json_error, std::string_view("{\0\n", 3));
  CHECK(out == R"({"file":"-","line":1,"offset":0,"error":"invalid_json","field":null,)"
               R"("message":"invalid JSON: x","record":"{\u0000\n"})" "\n");
}

TEST_CASE("dead-letter line: a raw line that is not UTF-8 goes to record_base64") {
  sluice::ErrorInfo error{ErrorCode::invalid_utf8, "invalid UTF-8", {}, {}};
  const std::vector<std::pair<std::string, std::string>> cases = {
      // Reference encodings from Python's base64 module.
      {"\xff", "/w=="},
      {"\xff\xfe", "//4="},
      {"\xff\xfe{", "//57"},
      {"{\"text\":\"caf\xe9\"}", "eyJ0ZXh0IjoiY2Fm6SJ9"},
  };
  for (const auto& [raw, b64] : cases) {
    std::string out;
    sluice::append_dead_letter_line(out, {"f", 2, 10}, error, raw);
    CHECK(out == R"({"file":"f","line":2,"offset":10,"error":"invalid_utf8","field":null,)"
                 R"("message":"invalid UTF-8","record_base64":")" + b64 + "\"}\n");
  }
  // An empty raw line (for example a too-long line whose bytes were not kept).
  std::string out;
  sluice::append_dead_letter_line(out, {"f", 3, 20},
                                  {ErrorCode::record_too_large, "too large", {}, {}}, "");
  CHECK(out == R"({"file":"f","line":3,"offset":20,"error":"record_too_large","field":null,)"
               R"("message":"too large","record":""})" "\n");
}

TEST_CASE("dead-letter line stays valid JSON when file or message is not UTF-8") {
  std::string out;
  sluice::append_dead_letter_line(out, {"bad\xff\xfe.jsonl", 1, 0},
                                  {ErrorCode::internal, "m\xC0", "f\xED\xA0\x80", {}}, "{}");
  CHECK(out == "{\"file\":\"bad\xEF\xBF\xBD\xEF\xBF\xBD.jsonl\",\"line\":1,\"offset\":0,"
               "\"error\":\"internal\",\"field\":\"f\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\","
               "\"message\":\"m\xEF\xBF\xBD\",\"record\":\"{}\"}\n");
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  CHECK(parser.parse(out).get(doc) == simdjson::SUCCESS);
}

TEST_CASE("find_invalid_utf8") {
  using sluice::find_invalid_utf8;
  CHECK(find_invalid_utf8("") == 0);
  CHECK(find_invalid_utf8("abc") == 3);
  CHECK(find_invalid_utf8("caf\xC3\xA9") == 5);
  CHECK(find_invalid_utf8("\xF0\x9F\x98\x80") == 4);
  CHECK(find_invalid_utf8("\xF4\x8F\xBF\xBF") == 4);     // U+10FFFF
  CHECK(find_invalid_utf8("ab\xFF") == 2);
  CHECK(find_invalid_utf8("a\xC0\xAF") == 1);           // overlong '/'
  CHECK(find_invalid_utf8("a\xE0\x80\xAF") == 1);       // overlong
  CHECK(find_invalid_utf8("a\xED\xA0\x80") == 1);       // U+D800
  CHECK(find_invalid_utf8("a\xF4\x90\x80\x80") == 1);   // above U+10FFFF
  CHECK(find_invalid_utf8("a\xE2\x82") == 1);           // truncated
  CHECK(find_invalid_utf8("\x80") == 0);                // lone continuation
  CHECK(find_invalid_utf8("ok\xC3\xA9\xC3") == 4);
}

// Expected values below come from numpy 1.24 (float16 casts, packbits, base64 of the
// little-endian bytes), not from this code.
TEST_CASE("float16 conversion rounds to nearest even like numpy") {
  const std::pair<float, std::uint16_t> cases[] = {
      {0.1f, 0x2E66},          {1.0f / 3.0f, 0x3555},     {-2.5f, 0xC100},        {65504.0f, 0x7BFF},
      {65519.0f, 0x7BFF},      {65520.0f, 0x7C00},        {1e-7f, 0x0002},        {0x1p-25f, 0x0000},
      {3 * 0x1p-26f, 0x0001},  {6.1e-5f, 0x03FF},         {6.109476089477539e-05f, 0x0401},
      {-0.0f, 0x8000},         {1e30f, 0x7C00},
  };
  for (auto [f, h] : cases) {
    CAPTURE(f);
    CHECK(float_to_half(f) == h);
  }
  // Every half value survives the round trip, and its neighbourhood rounds to it.
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const bool nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;
    if (nan) {
      CHECK(std::isnan(half_to_float(static_cast<std::uint16_t>(h))));
      continue;
    }
    REQUIRE(float_to_half(half_to_float(static_cast<std::uint16_t>(h))) == h);
  }
}

TEST_CASE("vectors in every output type and encoding") {
  const std::vector<float> v{0.5f, -0.25f, 0.0f, 0.9f, -1.5f, 0.2f, 0.3f, -0.1f, 0.7f};
  auto spelled = [&](VectorType t, VectorEncoding e) {
    std::string out;
    append_vector(out, v, VectorFormat{t, e});
    return out;
  };
  CHECK(spelled(VectorType::float32, VectorEncoding::json) == "[0.5,-0.25,0,0.9,-1.5,0.2,0.3,-0.1,0.7]");
  CHECK(spelled(VectorType::float16, VectorEncoding::json) ==
        "[0.5,-0.25,0,0.89990234,-1.5,0.19995117,0.30004883,-0.099975586,0.7001953]");
  CHECK(spelled(VectorType::int8, VectorEncoding::json) == "[64,-32,0,114,-127,25,38,-13,89]");
  CHECK(spelled(VectorType::binary, VectorEncoding::json) == "[150,128]");
  CHECK(spelled(VectorType::float32, VectorEncoding::base64) == "\"AAAAPwAAgL4AAAAAZmZmPwAAwL/NzEw+mpmZPs3MzL0zMzM/\"");
  CHECK(spelled(VectorType::float16, VectorEncoding::base64) == "\"ADgAtAAAMzsAvmYyzTRmrpo5\"");
  CHECK(spelled(VectorType::int8, VectorEncoding::base64) == "\"QOAAcoEZJvNZ\"");
  CHECK(spelled(VectorType::binary, VectorEncoding::base64) == "\"loA=\"");

  std::string line;
  sluice::append_output_line(line, "{\"id\":1", false, "embedding", v, VectorFormat{VectorType::binary, VectorEncoding::base64});
  CHECK(line == "{\"id\":1,\"embedding\":\"loA=\"}\n");
}
