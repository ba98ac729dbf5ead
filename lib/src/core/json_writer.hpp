#pragma once
// A small JSON text writer that appends to a caller-owned std::string, so a caller that keeps
// one buffer and clears it between documents allocates nothing in the steady state.
// No iostreams, no locale. Thread: any (a JsonWriter is used by one thread at a time; the free
// functions are pure).
//
// What it writes:
// - Strings: RFC 8259, UTF-8 out. `"` and `\` are escaped; the control characters below 0x20
//   are written as \b \t \n \f \r or, for the others, \u00xx (lower-case hex), exactly as
//   JavaScript's JSON.stringify does. Every other well-formed UTF-8 sequence is copied as is
//   (no \u escapes for non-ASCII, U+2028/U+2029 included). A byte that is not part of a
//   well-formed UTF-8 sequence (Unicode table 3-7: no overlong forms, no surrogates, nothing
//   above U+10FFFF) is replaced by U+FFFD, one U+FFFD per maximal ill-formed subpart (the
//   Unicode and WHATWG practice), so the output is always valid UTF-8 and valid JSON.
// - Doubles: the shortest text that reads back as the same double (fmt's "{}": 0.1, 1, -0,
//   1e-07, 1.7976931348623157e+308), all valid JSON numbers. JSON has no NaN or infinity:
//   those are written as `null`; nothing is rejected.
// - Integers: plain decimal, the full uint64_t / int64_t range.

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::json {

/// Appends `text` as a JSON string literal, quotes included (see the file comment for the
/// escaping and for how ill-formed UTF-8 is replaced).
void append_string(std::string& out, std::string_view text);

/// Appends the shortest decimal text that reads back as `value`; `null` for NaN and infinities.
void append_double(std::string& out, double value);

/// Appends `value` rounded to `decimals` digits after the point (0 to 17), e.g. 6 for a
/// timestamp with microseconds: 1717171717.123456. `null` for NaN and infinities.
void append_fixed(std::string& out, double value, int decimals);

/// Appends `value` in decimal.
void append_uint(std::string& out, std::uint64_t value);
/// Appends `value` in decimal, with a leading '-' when negative.
void append_int(std::string& out, std::int64_t value);

/// Whether `text` is well-formed UTF-8 (what append_string() copies unchanged).
bool is_valid_utf8(std::string_view text) noexcept;

/// Whether append_string() would copy `text` unchanged between the quotes: ASCII without
/// '"', '\' or control characters.
constexpr bool needs_no_escaping(std::string_view text) noexcept {
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') return false;
  }
  return true;
}

/// Writes JSON values into `out`, adding the commas and colons. The caller pairs begin/end
/// calls and, inside an object, calls key() before each value; the writer does not check this
/// beyond counting the depth. Every method returns the writer, for chaining:
///
///     std::string buf;
///     json::JsonWriter w(buf);
///     w.begin_object().key("seq").uint_value(7).key("name").string_value("a\"b").end_object();
///     // buf == R"({"seq":7,"name":"a\"b"})"
class JsonWriter {
 public:
  /// Appends to `out` (which is not cleared); `out` must outlive the writer.
  explicit JsonWriter(std::string& out) noexcept : out_(&out) {}

  JsonWriter& begin_object() {
    separate();
    out_->push_back('{');
    open();
    return *this;
  }
  JsonWriter& end_object() {
    out_->push_back('}');
    close();
    return *this;
  }
  JsonWriter& begin_array() {
    separate();
    out_->push_back('[');
    open();
    return *this;
  }
  JsonWriter& end_array() {
    out_->push_back(']');
    close();
    return *this;
  }

  /// The next member's name (escaped like any string), then ':'.
  JsonWriter& key(std::string_view name) {
    separate();
    append_string(*out_, name);
    out_->push_back(':');
    need_comma_ = false;
    return *this;
  }

  /// Like key(), without escaping: for names known to need none (ASCII without '"', '\' or
  /// control characters, e.g. the string literals of a schema). Checked by assert().
  JsonWriter& key_unescaped(std::string_view name) {
    assert(needs_no_escaping(name));
    if (need_comma_) {
      out_->push_back(',');
    }
    out_->push_back('"');
    out_->append(name);
    out_->append("\":", 2);
    need_comma_ = false;
    return *this;
  }

  JsonWriter& string_value(std::string_view text) {
    separate();
    append_string(*out_, text);
    need_comma_ = true;
    return *this;
  }
  JsonWriter& uint_value(std::uint64_t value) {
    separate();
    append_uint(*out_, value);
    need_comma_ = true;
    return *this;
  }
  JsonWriter& int_value(std::int64_t value) {
    separate();
    append_int(*out_, value);
    need_comma_ = true;
    return *this;
  }
  /// Shortest round-trip form; `null` for NaN and infinities.
  JsonWriter& double_value(double value) {
    separate();
    append_double(*out_, value);
    need_comma_ = true;
    return *this;
  }
  /// `decimals` digits after the point; `null` for NaN and infinities.
  JsonWriter& fixed_value(double value, int decimals) {
    separate();
    append_fixed(*out_, value, decimals);
    need_comma_ = true;
    return *this;
  }
  JsonWriter& bool_value(bool value) {
    separate();
    out_->append(value ? std::string_view("true") : std::string_view("false"));
    need_comma_ = true;
    return *this;
  }
  JsonWriter& null_value() {
    separate();
    out_->append("null");
    need_comma_ = true;
    return *this;
  }
  /// Appends `json`, which must be one complete, valid JSON value (not checked).
  JsonWriter& raw_value(std::string_view json) {
    separate();
    out_->append(json);
    need_comma_ = true;
    return *this;
  }

  /// Objects and arrays begun and not yet ended.
  int depth() const noexcept { return depth_; }
  std::string& buffer() noexcept { return *out_; }

 private:
  void separate() {
    if (need_comma_) out_->push_back(',');
  }
  void open() noexcept {
    need_comma_ = false;
    ++depth_;
  }
  void close() noexcept {
    need_comma_ = true;
    --depth_;
  }

  std::string* out_;
  bool need_comma_ = false;  // a value was completed at the current level
  int depth_ = 0;
};

}  // namespace sluice::json
