#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "io/line_splitter.hpp"
#include "io/output_format.hpp"
#include "io/record_parser.hpp"

using sluice::ErrorCode;
using sluice::ParsedRecord;
using sluice::RecordParser;

namespace {

ParsedRecord parse_ok(RecordParser& p, std::string_view line) {
  auto r = p.parse(line);
  if (!r.ok()) {
    CAPTURE(line);
    FAIL("unexpected error: " << r.error().message);
  }
  return std::move(r).value();
}

sluice::ErrorInfo parse_err(RecordParser& p, std::string_view line) {
  auto r = p.parse(line);
  if (r.ok()) {
    CAPTURE(line);
    FAIL("unexpected success, text: " << r.value().text);
  }
  return r.error();
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

std::string prefix_of(std::string_view line, const ParsedRecord& r) {
  return std::string(line.substr(0, r.prefix_length));
}

}  // namespace

TEST_CASE("a plain record: text, prefix up to the closing brace") {
  RecordParser p("text", "embedding");
  const std::string_view line = R"({"id":7,"text":"hello world","tags":["a","b"]})";
  const auto r = parse_ok(p, line);
  CHECK(r.text == "hello world");
  CHECK(prefix_of(line, r) == R"({"id":7,"text":"hello world","tags":["a","b"])");
  CHECK_FALSE(r.empty_object);
}

TEST_CASE("escapes in the text are unescaped") {
  RecordParser p("text", "embedding");
  CHECK(parse_ok(p, R"({"text":"caf\u00e9"})").text == "caf\xC3\xA9");
  CHECK(parse_ok(p, R"({"text":"a\nb\tc\rd"})").text == "a\nb\tc\rd");
  CHECK(parse_ok(p, R"({"text":"q\"b\\s\/f\bg\fh"})").text == "q\"b\\s/f\bg\fh");
  // U+1F600 as a surrogate pair, and as raw UTF-8.
  CHECK(parse_ok(p, R"({"text":"\ud83d\ude00"})").text == "\xF0\x9F\x98\x80");
  CHECK(parse_ok(p, "{\"text\":\"\xF0\x9F\x98\x80\"}").text == "\xF0\x9F\x98\x80");
  CHECK(parse_ok(p, R"({"text":"\u0041\u00DF\u6771\uFFFF"})").text ==
        "A\xC3\x9F\xE6\x9D\xB1\xEF\xBF\xBF");
  // An escaped NUL is fine: it is data of the text.
  CHECK(parse_ok(p, R"({"text":"a\u0000b"})").text == std::string("a\0b", 3));
  // Escapes in a key: "t\u0065xt" is "text".
  CHECK(parse_ok(p, R"({"t\u0065xt":"via escaped key"})").text == "via escaped key");
}

TEST_CASE("invalid surrogate escapes are invalid JSON") {
  RecordParser p("text", "embedding");
  for (const std::string_view line : {
           R"({"text":"\ud83d"})",          // high surrogate alone
           R"({"text":"\ud83dx"})",         // high surrogate then a letter
           R"({"text":"\ude00"})",          // low surrogate alone
           R"({"text":"\ude00\ud83d"})",    // reversed pair
           R"({"text":"\ud83d\u0041"})",    // high surrogate then a BMP escape
           R"({"text":"\ud83d\ud83d"})",    // two high surrogates
           R"({"text":"\u12"})",            // short escape
           R"({"text":"\x41"})",            // no such escape
       }) {
    CAPTURE(line);
    const auto e = parse_err(p, line);
    CHECK(e.code == ErrorCode::invalid_json);
    CHECK(contains(e.message, "invalid JSON: "));
    CHECK(contains(e.message, "escape"));
  }
}

TEST_CASE("invalid UTF-8 anywhere is invalid_utf8 with its position") {
  RecordParser p("text", "embedding");
  struct Case {
    std::string line;
    std::string where;
  };
  const std::vector<Case> cases = {
      {"{\"text\":\"\xFF\"}", "at byte 9 of the line (byte 0xFF)"},
      {"{\"text\":\"ok\",\"x\":\"\xC0\xAF\"}", "at byte 18 of the line (byte 0xC0)"},   // overlong
      {"{\"text\":\"\xED\xA0\x80\"}", "at byte 9 of the line (byte 0xED)"},             // surrogate
      {"{\"text\":\"ab\xE2\x82\"}", "at byte 11 of the line (byte 0xE2)"},              // truncated
      {"{\"t\xF5xt\":\"a\"}", "at byte 3 of the line (byte 0xF5)"},                     // in a key
      {"{\"text\":\"\xF4\x90\x80\x80\"}", "at byte 9 of the line (byte 0xF4)"},         // > U+10FFFF
      {"{\"text\":\"a\x80\"}", "at byte 10 of the line (byte 0x80)"},                   // lone continuation
  };
  for (const auto& c : cases) {
    CAPTURE(c.line);
    const auto e = parse_err(p, c.line);
    CHECK(e.code == ErrorCode::invalid_utf8);
    CHECK(contains(e.message, c.where));
  }
}

TEST_CASE("NUL and other raw control bytes are invalid JSON") {
  RecordParser p("text", "embedding");
  {
    const std::string line("{\"text\":\"a\0b\"}", 14);
    const auto e = parse_err(p, line);
    CHECK(e.code == ErrorCode::invalid_json);
    CHECK(contains(e.message, "must be escaped"));
    CHECK(contains(e.message, "byte 0x00 at byte 10 of the line"));
  }
  {
    const std::string line("{\"text\":\"ab\"}\0", 14);
    const auto e = parse_err(p, line);
    CHECK(e.code == ErrorCode::invalid_json);
    CHECK(contains(e.message, "NUL byte at byte 13"));
  }
  {
    const std::string line("{\"text\":\"tab\there\"}");
    const auto e = parse_err(p, line);
    CHECK(e.code == ErrorCode::invalid_json);
    CHECK(contains(e.message, "byte 0x09 at byte 12 of the line"));
  }
}

TEST_CASE("the root must be an object, and the message names what it is") {
  RecordParser p("text", "embedding");
  const std::vector<std::pair<std::string_view, std::string_view>> cases = {
      {R"(["text"])", "the record is an array, expected a JSON object"},
      {R"("text")", "the record is a string, expected a JSON object"},
      {"42", "the record is a number, expected a JSON object"},
      {"-1.5e3", "the record is a number, expected a JSON object"},
      {"1e400", "the record is a number, expected a JSON object"},
      {"true", "the record is a boolean, expected a JSON object"},
      {"null", "the record is null, expected a JSON object"},
  };
  for (const auto& [line, message] : cases) {
    CAPTURE(line);
    const auto e = parse_err(p, line);
    CHECK(e.code == ErrorCode::not_an_object);
    CHECK(e.message == message);
    CHECK(e.field.empty());
  }
}

TEST_CASE("missing text field") {
  RecordParser p("text", "embedding");
  for (const std::string_view line : {R"({"body":"x"})", "{}", "{ \t }", R"({"Text":"x"})",
                                      R"({"a":{"text":"nested"}})"}) {
    CAPTURE(line);
    const auto e = parse_err(p, line);
    CHECK(e.code == ErrorCode::missing_field);
    CHECK(e.message == R"(field "text" is missing)");
    CHECK(e.field == "text");
  }
  RecordParser body("body", "vec");
  const auto e = parse_err(body, R"({"text":"x"})");
  CHECK(e.message == R"(field "body" is missing)");
  CHECK(e.field == "body");
  CHECK(parse_ok(body, R"({"body":"y"})").text == "y");
  // A field name that needs escaping is quoted as JSON in the message.
  RecordParser odd("a\"b", "vec");
  CHECK(parse_err(odd, "{}").message == R"(field "a\"b" is missing)");
}

TEST_CASE("text field that is not a string") {
  RecordParser p("text", "embedding");
  const std::vector<std::pair<std::string_view, std::string_view>> cases = {
      {R"({"text":12})", R"(field "text" is a number, expected a string)"},
      {R"({"text":-0.5})", R"(field "text" is a number, expected a string)"},
      {R"({"text":18446744073709551615})", R"(field "text" is a number, expected a string)"},
      {R"({"text":1e400})", R"(field "text" is a number, expected a string)"},
      {R"({"text":null})", R"(field "text" is null, expected a string)"},
      {R"({"text":true})", R"(field "text" is a boolean, expected a string)"},
      {R"({"text":["a"]})", R"(field "text" is an array, expected a string)"},
      {R"({"text":{"a":"b"}})", R"(field "text" is an object, expected a string)"},
  };
  for (const auto& [line, message] : cases) {
    CAPTURE(line);
    const auto e = parse_err(p, line);
    CHECK(e.code == ErrorCode::field_not_string);
    CHECK(e.message == message);
    CHECK(e.field == "text");
  }
}

TEST_CASE("a record that already has the output field") {
  RecordParser p("text", "embedding");
  for (const std::string_view line : {R"({"text":"a","embedding":[0.1]})",
                                      R"({"embedding":null,"text":"a"})",
                                      R"({"text":"a","embeddin\u0067":1})"}) {
    CAPTURE(line);
    const auto e = parse_err(p, line);
    CHECK(e.code == ErrorCode::output_field_exists);
    CHECK(e.message ==
          R"(field "embedding" already exists; choose another name with --output-field)");
    CHECK(e.field == "embedding");
  }
  RecordParser other("text", "vec");
  CHECK(parse_ok(other, R"({"text":"a","embedding":[0.1]})").text == "a");
  CHECK(parse_err(other, R"({"text":"a","vec":[0.1]})").message ==
        R"(field "vec" already exists; choose another name with --output-field)");
}

TEST_CASE("empty or whitespace-only text") {
  RecordParser p("text", "embedding");
  {
    const auto e = parse_err(p, R"({"text":""})");
    CHECK(e.code == ErrorCode::empty_text);
    CHECK(e.message == R"(field "text" is empty: nothing to embed)");
    CHECK(e.field == "text");
  }
  for (const std::string_view line : {R"({"text":" "})", R"({"text":"\t\n\r  \f"})",
                                      R"({"text":"\u00a0\u3000\u2028\u2003\u0085"})",
                                      "{\"text\":\" \xE3\x80\x80 \"}"}) {
    CAPTURE(line);
    const auto e = parse_err(p, line);
    CHECK(e.code == ErrorCode::empty_text);
    CHECK(e.message == R"(field "text" holds only whitespace: nothing to embed)");
  }
  // Text with whitespace around a word is kept as is; zero-width space is not White_Space.
  CHECK(parse_ok(p, R"({"text":"  a  "})").text == "  a  ");
  CHECK(parse_ok(p, R"({"text":"\u200b"})").text == "\xE2\x80\x8B");
}

TEST_CASE("duplicate keys: the last text field wins, as Python's and JavaScript's readers show it; every byte is kept") {
  RecordParser p("text", "embedding");
  const std::string_view line = R"({"text":"first","text":"second"})";
  const auto r = parse_ok(p, line);
  CHECK(r.text == "second");
  CHECK(prefix_of(line, r) == R"({"text":"first","text":"second")");
  CHECK(parse_ok(p, R"({"text":1,"text":"a"})").text == "a");
  CHECK(parse_err(p, R"({"text":"a","text":1})").code == ErrorCode::field_not_string);
  CHECK(parse_err(p, R"({"text":"a","embedding":1,"embedding":2})").code ==
        ErrorCode::output_field_exists);
}

TEST_CASE("numbers beyond double range are accepted and kept byte for byte") {
  RecordParser p("text", "embedding");
  const std::string_view line =
      R"({"big":1e400,"int":123456789012345678901234567890,"neg":-1E+400,"tiny":1e-400,)"
      R"("u":18446744073709551616,"text":"x","arr":[1e999, -0.0, 0e0]})";
  const auto r = parse_ok(p, line);
  CHECK(r.text == "x");
  CHECK(prefix_of(line, r) == line.substr(0, line.size() - 1));
  // Strings are not touched while numbers are blanked for the second parse.
  const std::string_view tricky = R"({"n":1e400,"text":"\"1e400 \\\"99e999"})";
  CHECK(parse_ok(p, tricky).text == R"("1e400 \"99e999)");
  // Badly formed numbers are still rejected.
  for (const std::string_view bad : {R"({"text":"x","a":01})", R"({"text":"x","a":1.})",
                                     R"({"text":"x","a":+1})", R"({"text":"x","a":-})",
                                     R"({"text":"x","a":.5})", R"({"text":"x","a":1e})",
                                     R"({"text":"x","a":1e400x})", R"({"text":"x","a":1e400 2})",
                                     R"({"text":"x","a":NaN})", R"({"text":"x","a":1-2})",
                                     R"({"text":"x","a":1e400,"b":01})"}) {
    CAPTURE(bad);
    CHECK(parse_err(p, bad).code == ErrorCode::invalid_json);
  }
  CHECK(contains(parse_err(p, R"({"text":"x","a":01})").message, "no leading zeros"));
}

TEST_CASE("whitespace inside and around the braces") {
  RecordParser p("text", "embedding");
  {
    const std::string_view line = "  \t{ \"text\" :\t\"a\" ,\r\"n\": 1 \t }  \t\r";
    const auto r = parse_ok(p, line);
    CHECK(r.text == "a");
    // Leading whitespace and the whitespace before '}' are kept; trailing whitespace dropped.
    CHECK(prefix_of(line, r) == "  \t{ \"text\" :\t\"a\" ,\r\"n\": 1 \t ");
  }
  {
    const std::string_view line = R"({"text":"a"})";
    CHECK(parse_ok(p, line).prefix_length == line.size() - 1);
  }
  // A brace inside a string at the end does not confuse the prefix.
  {
    const std::string_view line = R"({"text":"}"} )";
    const auto r = parse_ok(p, line);
    CHECK(prefix_of(line, r) == R"({"text":"}")");
  }
}

TEST_CASE("structural errors") {
  RecordParser p("text", "embedding");
  for (const std::string_view line :
       {R"({"text":"a"} x)", R"({"text":"a"}{})", R"({"text":"a")", R"({"text":"a",})",
        R"({"text" "a"})", R"({text:"a"})", R"({'text':'a'})", "{\"text\":\"a\"}\f",
        R"({"text":"a","b":True})", R"({"text":"a","b":tru})", R"({"text":"a","b":nul})",
        R"({"text":"unclosed})", "", "   "}) {
    CAPTURE(line);
    const auto e = parse_err(p, line);
    CHECK(e.code == ErrorCode::invalid_json);
    CHECK(contains(e.message, "invalid JSON: "));
    CHECK_FALSE(e.detail.empty());
  }
  CHECK(contains(parse_err(p, R"({"text":"a","b":tru})").message, "lowercase"));
  CHECK(contains(parse_err(p, R"({"text":"a"} x)").message, "exactly one complete JSON object"));
}

TEST_CASE("deep nesting hits simdjson's depth limit with a clear message") {
  RecordParser p("text", "embedding");
  const std::string deep =
      R"({"text":"a","deep":)" + std::string(10000, '[') + std::string(10000, ']') + "}";
  const auto e = parse_err(p, deep);
  CHECK(e.code == ErrorCode::invalid_json);
  CHECK(contains(e.message, "too deep"));
  CHECK(contains(e.message, "at most 1024 levels"));
  // Within the limit: the root object plus 1000 arrays.
  const std::string ok =
      R"({"text":"a","deep":)" + std::string(1000, '[') + std::string(1000, ']') + "}";
  CHECK(parse_ok(p, ok).text == "a");
}

TEST_CASE("the reused buffer never leaks a previous line") {
  RecordParser p("text", "embedding");
  const std::string big = R"({"text":")" + std::string(100000, 'z') + R"("})";
  CHECK(parse_ok(p, big).text.size() == 100000);
  CHECK(parse_ok(p, R"({"text":"b"})").text == "b");
  // A line that is a prefix of the previous one: the stale bytes after it must be ignored.
  CHECK(parse_err(p, R"({"text":"ab"} xyz)").code == ErrorCode::invalid_json);
  CHECK(parse_ok(p, R"({"text":"ab"})").text == "ab");
  CHECK(parse_err(p, R"({"text":"ab")").code == ErrorCode::invalid_json);
  CHECK(parse_ok(p, big).text == std::string(100000, 'z'));
  // Moved parsers keep working.
  RecordParser q = std::move(p);
  CHECK(parse_ok(q, R"({"text":"moved"})").text == "moved");
}

TEST_CASE("prefix + appended field forms a valid record keeping every input member") {
  RecordParser p("text", "embedding");
  const std::string_view line =
      R"( {"id":123456789012345678901234567890,"text":"h\u00e9","x":1e400,"o":{"k":[1,2]}} )";
  const auto r = parse_ok(p, line);
  std::string out;
  const float v[] = {0.5f, -1.0f};
  sluice::append_output_line(out, line.substr(0, r.prefix_length), r.empty_object, "embedding", v);
  CHECK(out == R"( {"id":123456789012345678901234567890,"text":"h\u00e9","x":1e400,"o":{"k":[1,2]},)"
               R"("embedding":[0.5,-1]})" "\n");
}

TEST_CASE("hostile input file through the splitter and the parser") {
  const char* root = std::getenv("SLUICE_SOURCE_ROOT");
  const std::string path = std::string(root ? root : ".") + "/tests/data/hostile/mixed.jsonl";
  std::ifstream file(path, std::ios::binary);
  REQUIRE_MESSAGE(file.good(), "cannot open " << path);
  const std::string data((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());

  struct Outcome {
    std::uint64_t line;
    std::optional<ErrorCode> error;  // none: parsed
    std::string text;                // when parsed
  };
  // Hand-written from tests/data/hostile/README.md.
  const std::vector<Outcome> want = {
      {1, {}, "caf\xC3\xA9"},
      {4, {}, std::string("a\0b", 3)},
      {5, ErrorCode::invalid_json, ""},
      {6, ErrorCode::invalid_utf8, ""},
      {7, {}, "big numbers"},
      {8, {}, "second"},
      {9, ErrorCode::output_field_exists, ""},
      {10, ErrorCode::missing_field, ""},
      {11, {}, "spaced"},
      {12, ErrorCode::not_an_object, ""},
      {13, {}, "\xF0\x9F\x98\x80"},
      {14, ErrorCode::invalid_json, ""},
      {15, ErrorCode::field_not_string, ""},
      {16, ErrorCode::empty_text, ""},
      {17, ErrorCode::invalid_json, ""},
      {18, ErrorCode::invalid_json, ""},
      {19, {}, "last"},
  };

  for (const std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{4096}, data.size()}) {
    CAPTURE(chunk);
    RecordParser parser("text", "embedding");
    sluice::LineSplitter splitter(1 << 20);
    std::vector<Outcome> got;
    std::string output;
    std::uint64_t first_offset = 0;
    auto on_line = [&](const sluice::Line& line) {
      if (got.empty()) first_offset = line.offset;
      auto r = parser.parse(line.bytes);
      if (r.ok()) {
        got.push_back({line.number, {}, r.value().text});
        const float v[] = {0.25f};
        if (line.number == 7 || line.number == 11) {
          sluice::append_output_line(output, line.bytes.substr(0, r.value().prefix_length),
                                     r.value().empty_object, "embedding", v);
        }
      } else {
        got.push_back({line.number, r.error().code, ""});
      }
    };
    for (std::size_t at = 0; at < data.size(); at += chunk) {
      splitter.feed(std::string_view(data).substr(at, chunk), on_line);
    }
    splitter.finish(on_line);
    CHECK(first_offset == 3);
    CHECK(output ==
          R"({"id":5,"big":1e400,"n":123456789012345678901234567890,"text":"big numbers",)"
          R"("embedding":[0.25]})" "\n"
          R"(  { "text" : "spaced" ,"embedding":[0.25]})" "\n");
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
      CAPTURE(want[i].line);
      CHECK(got[i].line == want[i].line);
      CHECK(got[i].error == want[i].error);
      CHECK(got[i].text == want[i].text);
    }
  }
}
