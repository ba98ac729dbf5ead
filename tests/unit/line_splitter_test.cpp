#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "io/line_splitter.hpp"

using sluice::Line;
using sluice::LineSplitter;

namespace {

// A reported line, with its bytes copied (Line::bytes is only valid during the callback).
struct Got {
  std::string bytes;
  std::uint64_t number = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  bool too_long = false;
  std::uint64_t end_offset = 0;

  bool operator==(const Got&) const = default;
};

doctest::String to_str(const Got& g) {
  std::string s = "{#" + std::to_string(g.number) + " @" + std::to_string(g.offset) + ".." +
                  std::to_string(g.end_offset) + " len " + std::to_string(g.length) +
                  (g.too_long ? " too_long" : "") + " [";
  for (unsigned char c : g.bytes) {
    if (c >= 0x20 && c < 0x7F) {
      s += static_cast<char>(c);
    } else {
      constexpr char kHex[] = "0123456789abcdef";
      s += "\\x";
      s += kHex[c >> 4];
      s += kHex[c & 15];
    }
  }
  return (s + "]}").c_str();
}

}  // namespace

namespace doctest {
template <>
struct StringMaker<Got> {
  static String convert(const Got& g) { return to_str(g); }
};
template <>
struct StringMaker<std::vector<Got>> {
  static String convert(const std::vector<Got>& v) {
    String s = "[";
    for (const auto& g : v) s += to_str(g) + " ";
    return s + "]";
  }
};
}  // namespace doctest

namespace {

Got got(const Line& l) {
  return Got{std::string(l.bytes), l.number, l.offset, l.length, l.too_long, l.end_offset};
}

// Feeds `input` cut at the given positions (ascending), then finishes.
std::vector<Got> split_at(std::string_view input, const std::vector<std::size_t>& cuts,
                          std::uint64_t max, std::uint64_t start_offset = 0,
                          std::uint64_t first_line = 1) {
  std::vector<Got> out;
  LineSplitter s(max, start_offset, first_line);
  auto cb = [&](const Line& l) { out.push_back(got(l)); };
  std::size_t prev = 0;
  for (std::size_t c : cuts) {
    s.feed(input.substr(prev, c - prev), cb);
    prev = c;
  }
  s.feed(input.substr(prev), cb);
  CHECK(s.bytes_fed() == start_offset + input.size());
  s.finish(cb);
  CHECK(s.buffered_bytes() == 0);
  return out;
}

std::vector<Got> split_whole(std::string_view input, std::uint64_t max = 1 << 20) {
  return split_at(input, {}, max);
}

// Independent model of the rules, written the plain way over the whole input at once.
std::vector<Got> reference(std::string_view in, std::uint64_t max, std::uint64_t start_offset = 0,
                           std::uint64_t first_line = 1) {
  std::vector<Got> out;
  std::size_t pos = 0;
  if (start_offset == 0 && in.substr(0, 3) == "\xEF\xBB\xBF") pos = 3;
  std::uint64_t number = first_line;
  while (pos < in.size()) {
    const std::size_t nl = in.find('\n', pos);
    const std::size_t stop = nl == std::string_view::npos ? in.size() : nl;
    const std::size_t next = nl == std::string_view::npos ? in.size() : nl + 1;
    std::string_view text = in.substr(pos, stop - pos);
    if (nl != std::string_view::npos && !text.empty() && text.back() == '\r') {
      text.remove_suffix(1);
    }
    bool blank = true;
    for (char c : in.substr(pos, stop - pos)) {
      if (c != ' ' && c != '\t' && c != '\r') blank = false;
    }
    if (!blank) {
      const bool too_long = text.size() > max;
      out.push_back(Got{too_long ? std::string() : std::string(text), number, start_offset + pos,
                        text.size(), too_long, start_offset + next});
    }
    ++number;
    pos = next;
  }
  return out;
}

const std::vector<std::string>& hostile_inputs() {
  static const std::vector<std::string> inputs = {
      "{\"a\":1}\n\n  \r\n{\"b\":2}\r\nlast",
      "\xEF\xBB\xBF" "ab\r\ncd\r",
      "\xEF\xBB\xBF",
      "\xEF\xBB\xBF\n\xEF\xBB\xBFx\n",
      "\xEF\xBBx\n",
      "\xEF",
      "\xEF\xBB",
      "\r\r\n\r\n\r",
      "a\rb\r\r\n\rc\n",
      "0123456789\r\n01234567\r\n012345678\n01234567\r",
      "aaaaaaaa\r",
      "        \n\t\t\t\t\t\t\t\t\t\t\t\n x\n",
      std::string("nul\0in\0line\n\0\n", 15),
      "\n\n\n",
      "",
      "x",
      "0123456789abcdef0123456789\nshort\n0123456789abcdef0123456789",
  };
  return inputs;
}

// Peak resident memory of this process, in KiB (Linux).
long peak_rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

}  // namespace

TEST_CASE("LF lines: numbers, offsets, lengths, end offsets") {
  const auto lines = split_whole("{\"a\":1}\n{\"b\":22}\nxyz\n");
  const std::vector<Got> want = {
      {"{\"a\":1}", 1, 0, 7, false, 8},
      {"{\"b\":22}", 2, 8, 8, false, 17},
      {"xyz", 3, 17, 3, false, 21},
  };
  CHECK(lines == want);
}

TEST_CASE("CRLF: one \\r before \\n is part of the terminator; other \\r are data") {
  const auto lines = split_whole("ab\r\nc\rd\r\ne\r\r\n");
  const std::vector<Got> want = {
      {"ab", 1, 0, 2, false, 4},
      {"c\rd", 2, 4, 3, false, 9},
      {"e\r", 3, 9, 2, false, 13},
  };
  CHECK(lines == want);
}

TEST_CASE("final line without newline is reported by finish()") {
  std::vector<Got> out;
  LineSplitter s(100);
  auto cb = [&](const Line& l) { out.push_back(got(l)); };
  s.feed("one\ntw", cb);
  REQUIRE(out.size() == 1);
  s.feed("o", cb);
  CHECK(out.size() == 1);
  CHECK(s.buffered_bytes() == 3);
  s.finish(cb);
  REQUIRE(out.size() == 2);
  CHECK(out[1] == Got{"two", 2, 4, 3, false, 7});
  CHECK(s.next_line_number() == 3);

  // A "\r" at the very end, with no "\n" after it, is data.
  CHECK(split_whole("a\nb\r") == std::vector<Got>{{"a", 1, 0, 1, false, 2}, {"b\r", 2, 2, 2, false, 4}});
}

TEST_CASE("UTF-8 BOM at offset 0 is skipped; offsets stay stream positions") {
  CHECK(split_whole("\xEF\xBB\xBF{}\n{}\n") ==
        std::vector<Got>{{"{}", 1, 3, 2, false, 6}, {"{}", 2, 6, 2, false, 9}});
  // Only at the start of the stream.
  CHECK(split_whole("a\n\xEF\xBB\xBF" "b\n") ==
        std::vector<Got>{{"a", 1, 0, 1, false, 2}, {"\xEF\xBB\xBF" "b", 2, 2, 4, false, 7}});
  // Only a BOM: no line at all.
  CHECK(split_whole("\xEF\xBB\xBF").empty());
  // A BOM alone on line 1 makes that line blank.
  CHECK(split_whole("\xEF\xBB\xBF\nx") == std::vector<Got>{{"x", 2, 4, 1, false, 5}});
  // A partial BOM is data.
  CHECK(split_whole("\xEF\xBB" "x\n") == std::vector<Got>{{"\xEF\xBB" "x", 1, 0, 3, false, 4}});
  CHECK(split_whole("\xEF\xBB") == std::vector<Got>{{"\xEF\xBB", 1, 0, 2, false, 2}});
  // A BOM split over three chunks.
  CHECK(split_at("\xEF\xBB\xBF" "a\n", {1, 2}, 100) == std::vector<Got>{{"a", 1, 3, 1, false, 5}});
  // When resuming mid-stream the first bytes are not a BOM but data.
  CHECK(split_at("\xEF\xBB\xBF" "a\n", {}, 100, 10, 4) ==
        std::vector<Got>{{"\xEF\xBB\xBF" "a", 4, 10, 4, false, 15}});
}

TEST_CASE("blank and whitespace-only lines are counted but not reported") {
  const auto lines = split_whole("\n  \n\t\r\n\r\n{}\n \t \n x \n");
  CHECK(lines == std::vector<Got>{{"{}", 5, 9, 2, false, 12}, {" x ", 7, 16, 3, false, 20}});
  // A form feed or vertical tab is not whitespace here: the line is reported (and the JSON
  // parser rejects it).
  CHECK(split_whole("\f\n").size() == 1);
  CHECK(split_whole("\v").size() == 1);
  // Whitespace-only final line without newline.
  CHECK(split_whole("a\n   ").size() == 1);
}

TEST_CASE("NUL bytes are data") {
  const std::string in("{\"a\":\"\0\"}\n\0\n", 12);
  CHECK(split_whole(in) == std::vector<Got>{{std::string("{\"a\":\"\0\"}", 9), 1, 0, 9, false, 10},
                                            {std::string("\0", 1), 2, 10, 1, false, 12}});
}

TEST_CASE("too long lines are reported once with their true length and no bytes") {
  const std::uint64_t max = 8;
  const auto lines = split_whole("123456789\n12345678\r\n12345678\n123456789\r\nok\n1234567890", max);
  const std::vector<Got> want = {
      {"", 1, 0, 9, true, 10},
      {"12345678", 2, 10, 8, false, 20},
      {"12345678", 3, 20, 8, false, 29},
      {"", 4, 29, 9, true, 40},
      {"ok", 5, 40, 2, false, 43},
      {"", 6, 43, 10, true, 53},
  };
  CHECK(lines == want);
  // A final line of exactly max bytes plus a "\r" (data, no "\n" follows) is too long.
  CHECK(split_whole("12345678\r", max) == std::vector<Got>{{"", 1, 0, 9, true, 9}});
  // A blank line stays blank however long it is.
  CHECK(split_whole(std::string(100, ' ') + "\nx", max) == std::vector<Got>{{"x", 2, 101, 1, false, 102}});
  // max_line_bytes = 0: every non-blank line is too long.
  CHECK(split_whole("a\n", 0) == std::vector<Got>{{"", 1, 0, 1, true, 2}});
}

TEST_CASE("resuming at an offset numbers lines from there") {
  CHECK(split_at("x\ny\n", {}, 100, 1000, 42) ==
        std::vector<Got>{{"x", 42, 1000, 1, false, 1002}, {"y", 43, 1002, 1, false, 1004}});
}

TEST_CASE("the reference model agrees on whole inputs") {
  for (const auto& in : hostile_inputs()) {
    CAPTURE(in);
    CHECK(split_whole(in, 8) == reference(in, 8));
    CHECK(split_whole(in, 1 << 20) == reference(in, 1 << 20));
  }
}

TEST_CASE("every chunk boundary gives the same lines") {
  for (const std::uint64_t max : {std::uint64_t{8}, std::uint64_t{1} << 20}) {
    for (const auto& in : hostile_inputs()) {
      CAPTURE(in);
      CAPTURE(max);
      const auto want = reference(in, max);
      // One cut at every position (cuts at 0 and n feed an empty chunk).
      for (std::size_t a = 0; a <= in.size(); ++a) {
        const auto lines = split_at(in, {a}, max);
        if (lines != want) {
          CAPTURE(a);
          CHECK(lines == want);
        }
      }
      // Two cuts at every pair of positions.
      for (std::size_t a = 0; a <= in.size(); ++a) {
        for (std::size_t b = a; b <= in.size(); ++b) {
          const auto lines = split_at(in, {a, b}, max);
          if (lines != want) {
            CAPTURE(a);
            CAPTURE(b);
            CHECK(lines == want);
          }
        }
      }
      // One byte at a time.
      std::vector<std::size_t> every;
      for (std::size_t a = 1; a < in.size(); ++a) every.push_back(a);
      CHECK(split_at(in, every, max) == want);
      // Resumed at an offset, which also turns off the BOM check.
      CHECK(split_at(in, every, max, 77, 5) == reference(in, max, 77, 5));
    }
  }
}

TEST_CASE("a line inside one chunk is a view into it; a line across chunks is a copy") {
  const std::string chunk1 = "{\"a\":1}\n{\"b\"";
  const std::string chunk2 = ":2}\n";
  LineSplitter s(100);
  std::vector<const char*> data;
  std::vector<std::string> text;
  auto cb = [&](const Line& l) {
    data.push_back(l.bytes.data());
    text.emplace_back(l.bytes);
  };
  s.feed(chunk1, cb);
  CHECK(s.buffered_bytes() == 4);
  s.feed(chunk2, cb);
  s.finish(cb);
  REQUIRE(data.size() == 2);
  CHECK(data[0] == chunk1.data());
  CHECK(text[1] == "{\"b\":2}");
  const bool in_chunk1 = data[1] >= chunk1.data() && data[1] < chunk1.data() + chunk1.size();
  const bool in_chunk2 = data[1] >= chunk2.data() && data[1] < chunk2.data() + chunk2.size();
  CHECK_FALSE(in_chunk1);
  CHECK_FALSE(in_chunk2);
}

TEST_CASE("a 100 MB line streamed in chunks is never buffered") {
  const std::uint64_t max = 1 << 20;
  const std::uint64_t huge = 100ull << 20;
  const std::string block(64 << 10, 'x');
  std::vector<Got> out;
  auto cb = [&](const Line& l) { out.push_back(got(l)); };
  const long rss_before = peak_rss_kib();

  LineSplitter s(max);
  s.feed("{\"a\":1}\r\n{\"text\":\"", cb);
  const std::uint64_t start = 9;
  std::uint64_t line_bytes = 9;  // {"text":"
  std::uint64_t most_buffered = 0;
  while (line_bytes + block.size() <= huge - 2) {
    s.feed(block, cb);
    line_bytes += block.size();
    most_buffered = std::max(most_buffered, s.buffered_bytes());
  }
  const std::string tail = std::string(huge - 2 - line_bytes, 'y') + "\"}\r\n{\"b\":2}";
  s.feed(tail, cb);
  s.finish(cb);

  CHECK(most_buffered <= max);
  CHECK(s.buffered_bytes() == 0);
  REQUIRE(out.size() == 3);
  CHECK(out[0] == Got{"{\"a\":1}", 1, 0, 7, false, 9});
  CHECK(out[1] == Got{"", 2, start, huge, true, start + huge + 2});
  CHECK(out[2] == Got{"{\"b\":2}", 3, start + huge + 2, 7, false, start + huge + 9});
  // Peak memory grew by far less than the line (only the bounded buffer, ~1 MiB).
  const long rss_after = peak_rss_kib();
  if (rss_before > 0 && rss_after > 0) CHECK(rss_after - rss_before < 16 * 1024);
}

TEST_CASE("a 100 MB whitespace-only line is counted but not reported") {
  const std::string block(64 << 10, ' ');
  std::vector<Got> out;
  auto cb = [&](const Line& l) { out.push_back(got(l)); };
  LineSplitter s(1 << 20);
  std::uint64_t fed = 0;
  for (int i = 0; i < 1600; ++i) {
    s.feed(block, cb);
    fed += block.size();
    CHECK(s.buffered_bytes() <= (1u << 20));
  }
  s.feed("\r\n{}", cb);
  s.finish(cb);
  CHECK(out == std::vector<Got>{{"{}", 2, fed + 2, 2, false, fed + 4}});
}
