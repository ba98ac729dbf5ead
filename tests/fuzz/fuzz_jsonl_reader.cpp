// Fuzz target: the JSONL reader (LineSplitter + RecordParser), as the pipeline drives it.
//
// Input layout: the stream's bytes, then 8 configuration bytes (absent when the input is
// shorter: all zero then):
//   [0] max_line_bytes, one of kMaxLineBytes      [1] text/output field names, one of kFields
//   [2..5] seed of the chunk sizes the stream is fed in (zero-length chunks included)
//   [6] which reported line a second splitter resumes after (as a checkpoint resume does)
//   [7] unused
//
// Invariants checked:
// - The lines reported, fed in random chunks, are exactly those of a whole-input scan written
//   here from the rules in line_splitter.hpp (numbers, offsets, lengths, end offsets, too_long,
//   bytes), then next_line_number() and bytes_fed() agree with it.
// - Memory: buffered_bytes() never exceeds max(max_line_bytes, 2) between feeds.
// - Resume: a splitter started at a reported line's end_offset with the next line number, fed
//   the rest, reports exactly the remaining lines.
// - RecordParser on every line: the outcome (ok, or which error code) is the one an independent
//   RFC 8259 reader (json_check.hpp) predicts from the rules in record_parser.hpp; on success
//   the text equals the independently unescaped field and is valid UTF-8, prefix_length <
//   line size, line[prefix_length] is the closing '}' with only JSON whitespace after it, and
//   the output line built from the prefix parses back as an object with the same text whose
//   last member is the output field.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "io/line_splitter.hpp"
#include "io/record_parser.hpp"
#include "json_check.hpp"

using sluice::ErrorCode;
using sluice::Line;
using sluice::LineSplitter;
using sluice::RecordParser;
using namespace sluice::fuzz;

namespace {

constexpr std::uint64_t kMaxLineBytes[16] = {0,  1,  2,   3,   4,    5,     8,        16,
                                             31, 64, 100, 256, 1024, 65536, 1u << 20, UINT64_MAX};

struct FieldPair {
  std::string_view text;         // name of the text field
  std::string_view output;       // name of the output field
  std::string_view output_json;  // the output field as a JSON string literal
};
constexpr FieldPair kFields[4] = {
    {"text", "embedding", "\"embedding\""},
    {"", "e", "\"e\""},
    {"t\"x", "a\\b", "\"a\\\\b\""},
    {"\xC3\xA9", "\xE2\x82\xAC", "\"\\u20ac\""},
};

struct RefLine {
  std::string bytes;
  std::uint64_t number, offset, length, end_offset;
  bool too_long;
  bool operator==(const RefLine&) const = default;
};

RefLine copy_line(const Line& l) {
  return {std::string(l.bytes), l.number, l.offset, l.length, l.end_offset, l.too_long};
}

bool blank(std::string_view s) {
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\r') return false;
  }
  return true;
}

// The rules of line_splitter.hpp, applied to the whole input at once.
std::vector<RefLine> whole_scan(std::string_view in, std::uint64_t max, std::uint64_t& next_line) {
  std::vector<RefLine> out;
  std::size_t pos = in.substr(0, 3) == "\xEF\xBB\xBF" ? 3 : 0;
  std::uint64_t number = 1;
  while (pos < in.size()) {
    const std::size_t nl = in.find('\n', pos);
    const bool terminated = nl != std::string_view::npos;
    std::string_view raw = in.substr(pos, terminated ? nl - pos : std::string_view::npos);
    const std::uint64_t end = terminated ? nl + 1 : in.size();
    if (!blank(raw)) {
      std::string_view content = raw;
      if (terminated && !content.empty() && content.back() == '\r') content.remove_suffix(1);
      const bool too_long = content.size() > max;
      out.push_back({too_long ? std::string() : std::string(content), number, pos, content.size(), end, too_long});
    }
    ++number;
    pos = end;
  }
  next_line = number;
  return out;
}

// xorshift64; a zero state would stay zero (and feed zero-length chunks forever).
struct Rng {
  std::uint64_t s;
  explicit Rng(std::uint64_t seed) : s(seed != 0 ? seed : 1) {}
  std::uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
};

std::size_t chunk_size(Rng& rng, std::size_t left) {
  const std::uint64_t r = rng.next();
  std::size_t n;
  switch (r & 3) {
    case 0:
      n = (r >> 8) % 4;
      break;  // 0..3, zero-length chunks too
    case 1:
      n = 1 + (r >> 8) % 64;
      break;
    case 2:
      n = 1 + (r >> 8) % 4096;
      break;
    default:
      n = left;
      break;
  }
  return n < left ? n : left;
}

// Feeds `in` to `splitter` in random chunks; returns the lines reported.
std::vector<RefLine> feed_all(LineSplitter& splitter, std::string_view in, Rng rng, std::uint64_t max) {
  std::vector<RefLine> got;
  auto on_line = [&](const Line& l) { got.push_back(copy_line(l)); };
  const std::uint64_t bound = max > 2 ? max : 2;
  std::size_t at = 0;
  while (at < in.size()) {
    const std::size_t n = chunk_size(rng, in.size() - at);
    splitter.feed(in.substr(at, n), on_line);
    at += n;
    FUZZ_CHECK(splitter.buffered_bytes() <= bound, "buffered %llu bytes, limit %llu",
               static_cast<unsigned long long>(splitter.buffered_bytes()), static_cast<unsigned long long>(max));
  }
  splitter.finish(on_line);
  FUZZ_CHECK(splitter.buffered_bytes() == 0, "finish() left %llu bytes buffered",
             static_cast<unsigned long long>(splitter.buffered_bytes()));
  return got;
}

void compare_lines(const std::vector<RefLine>& got, const std::vector<RefLine>& want, const char* what) {
  FUZZ_CHECK(got.size() == want.size(), "%s: %zu lines reported, the whole-input scan has %zu", what, got.size(),
             want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    const RefLine& g = got[i];
    const RefLine& w = want[i];
    FUZZ_CHECK(g == w,
               "%s: line #%zu differs: got number %llu offset %llu length %llu end %llu too_long %d bytes \"%s\"; "
               "expected number %llu offset %llu length %llu end %llu too_long %d bytes \"%s\"",
               what, i, (unsigned long long)g.number, (unsigned long long)g.offset, (unsigned long long)g.length,
               (unsigned long long)g.end_offset, g.too_long, printable(g.bytes).c_str(), (unsigned long long)w.number,
               (unsigned long long)w.offset, (unsigned long long)w.length, (unsigned long long)w.end_offset, w.too_long,
               printable(w.bytes).c_str());
  }
}

bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool blank_text(std::string_view text) {
  for (std::uint32_t cp : code_points(text)) {
    if (!is_unicode_white_space(cp)) return false;
  }
  return true;
}

const char* code_name(ErrorCode c) { return sluice::error_name(c).data(); }

// What record_parser.hpp's rules say parse() returns for `line`.
struct Expected {
  bool decided = true;  // false: the independent reader cannot tell (see below)
  bool ok = false;
  ErrorCode code = ErrorCode::internal;
  bool code_invalid_utf8_or_json = false;  // either of the two is right
  std::string text;
  bool empty_object = false;
};

Expected expect(const JsonDoc& doc, const FieldPair& f) {
  Expected e;
  // simdjson's depth limit (1024) is not re-derived here, nor its choice for escapes of lone
  // surrogates (allowed by the grammar, refused by simdjson): outcome not predicted.
  if (doc.max_depth > 1000 || doc.lone_surrogate) {
    e.decided = false;
    return e;
  }
  if (!doc.utf8_ok) {
    e.code_invalid_utf8_or_json = true;  // simdjson may see the syntax error first
    return e;
  }
  if (!doc.valid) {
    e.code = ErrorCode::invalid_json;
    return e;
  }
  if (doc.root != Kind::object) {
    e.code = ErrorCode::not_an_object;
    return e;
  }
  const Member* text = nullptr;
  bool has_output = false;
  for (const Member& m : doc.members) {
    if (m.key == f.text) text = &m;  // the last one, as Python and JavaScript read it
    if (m.key == f.output) has_output = true;
  }
  if (text == nullptr) {
    e.code = ErrorCode::missing_field;
    return e;
  }
  if (text->kind != Kind::string) {
    e.code = ErrorCode::field_not_string;
    return e;
  }
  if (has_output) {
    e.code = ErrorCode::output_field_exists;
    return e;
  }
  if (blank_text(text->value)) {
    e.code = ErrorCode::empty_text;
    return e;
  }
  e.ok = true;
  e.text = text->value;
  e.empty_object = doc.members.empty();
  return e;
}

void check_record(RecordParser& parser, RecordParser& reparser, RecordParser& strict_parser, std::string_view line,
                  const FieldPair& f) {
  auto r = parser.parse(line);
  const JsonDoc doc = read_json(line);
  const Expected e = expect(doc, f);
  const std::string shown = printable(line);

  if (e.decided) {
    if (e.ok) {
      FUZZ_CHECK(r.ok(), "parse failed (%s: %s) on a record the grammar accepts: %s", code_name(r.error().code),
                 r.error().message.c_str(), shown.c_str());
    } else {
      FUZZ_CHECK(!r.ok(), "parse accepted a record that should fail: %s", shown.c_str());
      if (e.code_invalid_utf8_or_json) {
        FUZZ_CHECK(r.error().code == ErrorCode::invalid_utf8 || r.error().code == ErrorCode::invalid_json,
                   "invalid UTF-8 reported as %s: %s", code_name(r.error().code), shown.c_str());
      } else {
        FUZZ_CHECK(r.error().code == e.code, "error %s, expected %s (%s): %s", code_name(r.error().code),
                   code_name(e.code), r.error().message.c_str(), shown.c_str());
      }
    }
  }
  if (!r.ok()) {
    FUZZ_CHECK(!r.error().message.empty(), "error %s without a message", code_name(r.error().code));
    FUZZ_CHECK(r.error().code != ErrorCode::internal, "internal error: %s: %s", r.error().message.c_str(),
               shown.c_str());
    return;
  }

  // Accepted: the record is valid JSON whatever the outcome prediction said.
  const sluice::ParsedRecord& rec = r.value();
  FUZZ_CHECK(doc.valid && doc.root == Kind::object, "accepted a record that is not one JSON object: %s", shown.c_str());
  FUZZ_CHECK(is_utf8(rec.text), "the text is not valid UTF-8: \"%s\" from %s", printable(rec.text).c_str(),
             shown.c_str());
  FUZZ_CHECK(!rec.text.empty() && !blank_text(rec.text), "accepted an empty or blank text: %s", shown.c_str());
  if (e.decided) {
    FUZZ_CHECK(rec.text == e.text, "text \"%s\", expected \"%s\": %s", printable(rec.text).c_str(),
               printable(e.text).c_str(), shown.c_str());
    FUZZ_CHECK(rec.empty_object == e.empty_object, "empty_object %d, expected %d: %s", rec.empty_object, e.empty_object,
               shown.c_str());
  }
  FUZZ_CHECK(rec.prefix_length < line.size(), "prefix_length %zu, line size %zu", rec.prefix_length, line.size());
  FUZZ_CHECK(line[rec.prefix_length] == '}', "prefix ends before '%c', not the closing brace: %s",
             line[rec.prefix_length], shown.c_str());
  for (std::size_t i = rec.prefix_length + 1; i < line.size(); ++i) {
    FUZZ_CHECK(is_json_space(line[i]), "non-whitespace after the closing brace at %zu: %s", i, shown.c_str());
  }

  // The output line, as output_format builds it (the embedding's value is irrelevant here).
  std::string out(line.substr(0, rec.prefix_length));
  if (!rec.empty_object) out.push_back(',');
  out += f.output_json;
  out += ":[0.5,-1]}";
  const JsonDoc out_doc = read_json(out);
  FUZZ_CHECK(out_doc.valid && out_doc.root == Kind::object && !out_doc.members.empty() &&
                 out_doc.members.back().key == f.output && out_doc.members.back().kind == Kind::array,
             "output line is not the object plus the output field: %s", printable(out).c_str());
  FUZZ_CHECK(out_doc.members.size() == doc.members.size() + 1, "output line has %zu members, input %zu",
             out_doc.members.size(), doc.members.size());
  bool has_other = false;  // the reparser's output field, "other", is in the record already
  for (const Member& m : doc.members) has_other = has_other || m.key == "other";
  auto again = reparser.parse(out);
  if (has_other) {
    FUZZ_CHECK(!again.ok() && again.error().code == ErrorCode::output_field_exists,
               "output line with an \"other\" field not refused: %s", printable(out).c_str());
  } else {
    FUZZ_CHECK(again.ok() && again.value().text == rec.text && again.value().prefix_length == out.size() - 1,
               "output line does not parse back to the same text: %s", printable(out).c_str());
  }
  auto refused = strict_parser.parse(out);
  FUZZ_CHECK(!refused.ok() && refused.error().code == ErrorCode::output_field_exists,
             "output line not refused with output_field_exists: %s", printable(out).c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::uint8_t cfg[8] = {};
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (size >= sizeof cfg) {
    std::memcpy(cfg, data + size - sizeof cfg, sizeof cfg);
    in.remove_suffix(sizeof cfg);
  }
  const std::uint64_t max = kMaxLineBytes[cfg[0] % 16];
  const FieldPair& fields = kFields[cfg[1] % 4];
  std::uint64_t seed = 0;
  std::memcpy(&seed, cfg + 2, 4);
  Rng rng{seed * 0x9E3779B97F4A7C15ull + 1};

  std::uint64_t want_next = 0;
  const std::vector<RefLine> want = whole_scan(in, max, want_next);

  LineSplitter splitter(max);
  const std::vector<RefLine> got = feed_all(splitter, in, rng, max);
  compare_lines(got, want, "chunked");
  FUZZ_CHECK(splitter.next_line_number() == want_next, "next_line_number %llu, expected %llu",
             (unsigned long long)splitter.next_line_number(), (unsigned long long)want_next);
  FUZZ_CHECK(splitter.bytes_fed() == in.size(), "bytes_fed %llu, input %zu", (unsigned long long)splitter.bytes_fed(),
             in.size());

  // Resume after a reported line, as a checkpoint resume does.
  if (!want.empty()) {
    const std::size_t k = cfg[6] % want.size();
    const RefLine& at = want[k];
    LineSplitter resumed(max, at.end_offset, at.number + 1);
    const std::vector<RefLine> rest = feed_all(resumed, in.substr(at.end_offset), Rng{rng.s ^ 0x5555}, max);
    compare_lines(rest, std::vector<RefLine>(want.begin() + static_cast<std::ptrdiff_t>(k) + 1, want.end()), "resumed");
    FUZZ_CHECK(resumed.next_line_number() == want_next, "resumed: next_line_number %llu, expected %llu",
               (unsigned long long)resumed.next_line_number(), (unsigned long long)want_next);
    FUZZ_CHECK(resumed.bytes_fed() == in.size(), "resumed: bytes_fed %llu, input %zu",
               (unsigned long long)resumed.bytes_fed(), in.size());
  }

  // Every line through the record parser (one parser reused, as in the pipeline).
  static RecordParser parsers[4] = {
      RecordParser(std::string(kFields[0].text), std::string(kFields[0].output)),
      RecordParser(std::string(kFields[1].text), std::string(kFields[1].output)),
      RecordParser(std::string(kFields[2].text), std::string(kFields[2].output)),
      RecordParser(std::string(kFields[3].text), std::string(kFields[3].output)),
  };
  // Output lines are parsed with another output field (must accept) and the same (must refuse).
  static RecordParser reparsers[4] = {
      RecordParser(std::string(kFields[0].text), "other"),
      RecordParser(std::string(kFields[1].text), "other"),
      RecordParser(std::string(kFields[2].text), "other"),
      RecordParser(std::string(kFields[3].text), "other"),
  };
  const std::size_t fi = static_cast<std::size_t>(&fields - kFields);
  for (const RefLine& l : want) {
    if (!l.too_long) check_record(parsers[fi], reparsers[fi], parsers[fi], l.bytes, fields);
  }
  return 0;
}
