#include "record_parser.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include <fmt/format.h>
#include <simdjson.h>

#include "output_format.hpp"

namespace sluice {

namespace {

bool is_json_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
bool is_number_byte(char c) noexcept {
  return is_digit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

// RFC 8259: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
bool is_json_number(std::string_view s) noexcept {
  std::size_t i = 0;
  const std::size_t n = s.size();
  if (i < n && s[i] == '-') ++i;
  if (i >= n) return false;
  if (s[i] == '0') {
    ++i;
  } else if (s[i] >= '1' && s[i] <= '9') {
    while (i < n && is_digit(s[i])) ++i;
  } else {
    return false;
  }
  if (i < n && s[i] == '.') {
    ++i;
    if (i >= n || !is_digit(s[i])) return false;
    while (i < n && is_digit(s[i])) ++i;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    if (i >= n || !is_digit(s[i])) return false;
    while (i < n && is_digit(s[i])) ++i;
  }
  return i == n;
}

// simdjson rejects numbers that do not fit a double or a 64-bit integer (1e400,
// 123456789012345678901234567890), though they are valid JSON. We never read numbers, so
// each well-formed number outside strings is overwritten with "0" and spaces (same length)
// and the copy is parsed again. Badly formed numbers are left alone and still rejected.
// Returns whether anything was replaced.
bool blank_out_numbers(char* p, std::size_t n) noexcept {
  bool changed = false;
  std::size_t i = 0;
  while (i < n) {
    const char c = p[i];
    if (c == '"') {
      ++i;
      while (i < n && p[i] != '"') i += (p[i] == '\\') ? 2 : 1;
      ++i;
    } else if (c == '-' || is_digit(c)) {
      std::size_t j = i;
      while (j < n && is_number_byte(p[j])) ++j;
      if (is_json_number(std::string_view(p + i, j - i))) {
        p[i] = '0';
        std::memset(p + i + 1, ' ', j - i - 1);
        changed = true;
      }
      i = j;
    } else {
      ++i;
    }
  }
  return changed;
}

// Offset of the first raw control character (below 0x20) inside a string, or npos.
std::size_t find_control_in_string(std::string_view s) noexcept {
  bool in_string = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (in_string) {
      if (c < 0x20) return i;
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    }
  }
  return std::string_view::npos;
}

const char* type_name(simdjson::dom::element_type t) noexcept {
  using simdjson::dom::element_type;
  switch (t) {
    case element_type::ARRAY: return "an array";
    case element_type::OBJECT: return "an object";
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE: return "a number";
    case element_type::STRING: return "a string";
    case element_type::BOOL: return "a boolean";
    case element_type::NULL_VALUE: return "null";
  }
  return "an unknown value";
}

// Decodes the code point at s[i] (s is valid UTF-8) and advances i.
char32_t next_code_point(std::string_view s, std::size_t& i) noexcept {
  const auto c = static_cast<unsigned char>(s[i]);
  auto cont = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[i + k]) & 0x3F); };
  char32_t cp;
  if (c < 0x80) {
    cp = c;
    i += 1;
  } else if (c < 0xE0) {
    cp = (char32_t{c & 0x1Fu} << 6) | cont(1);
    i += 2;
  } else if (c < 0xF0) {
    cp = (char32_t{c & 0x0Fu} << 12) | (cont(1) << 6) | cont(2);
    i += 3;
  } else {
    cp = (char32_t{c & 0x07u} << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
    i += 4;
  }
  return cp;
}

// Unicode's White_Space property (PropList.txt).
bool is_white_space(char32_t cp) noexcept {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

bool is_blank_text(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    if (!is_white_space(next_code_point(s, i))) return false;
  }
  return true;
}

}  // namespace

struct RecordParser::Impl {
  std::string text_field;
  std::string output_field;
  std::string text_field_quoted;    // "text", as a JSON string, for messages
  std::string output_field_quoted;  // "embedding"
  simdjson::dom::parser parser;
  std::unique_ptr<char[]> buffer;   // the line + SIMDJSON_PADDING
  std::size_t buffer_capacity = 0;  // bytes of line it can hold
  bool allow_empty_text = false;
  std::string id_field;             // empty: no id is extracted

  char* padded_copy(std::string_view line) {
    if (line.size() > buffer_capacity) {
      const std::size_t cap = std::max(line.size(), buffer_capacity * 2);
      // Value-initialised: simdjson reads the padding, whose value does not matter.
      buffer.reset(new char[cap + simdjson::SIMDJSON_PADDING]());
      buffer_capacity = cap;
    }
    std::memcpy(buffer.get(), line.data(), line.size());
    return buffer.get();
  }

  ErrorInfo json_error(simdjson::error_code code, std::string_view line) const;
};

ErrorInfo RecordParser::Impl::json_error(simdjson::error_code code, std::string_view line) const {
  ErrorInfo info;
  info.detail = fmt::format("simdjson error {}: {}", static_cast<int>(code),
                            simdjson::error_message(code));
  if (code == simdjson::UTF8_ERROR) {
    info.code = ErrorCode::invalid_utf8;
    const std::size_t at = find_invalid_utf8(line);
    if (at < line.size()) {
      info.message = fmt::format(
          "invalid UTF-8 at byte {} of the line (byte 0x{:02X}); the input must be UTF-8 text", at,
          static_cast<unsigned char>(line[at]));
    } else {
      info.message = "invalid UTF-8; the input must be UTF-8 text";
    }
    return info;
  }
  if (code == simdjson::CAPACITY) {
    info.code = ErrorCode::record_too_large;
    info.message = fmt::format("record of {} bytes is too large for the JSON parser", line.size());
    return info;
  }
  if (code == simdjson::MEMALLOC) {
    info.code = ErrorCode::internal;
    info.message = fmt::format("out of memory parsing a record of {} bytes", line.size());
    return info;
  }
  info.code = ErrorCode::invalid_json;
  if (code == simdjson::EMPTY) {
    info.message = "invalid JSON: the line holds no JSON value";
    return info;
  }
  std::string hint;
  switch (code) {
    case simdjson::TAPE_ERROR:
      hint = "each line must hold exactly one complete JSON object";
      break;
    case simdjson::DEPTH_ERROR:
      hint = fmt::format("arrays and objects may be nested at most {} levels deep",
                         simdjson::DEFAULT_MAX_DEPTH);
      break;
    case simdjson::STRING_ERROR:
      hint = "check the backslash escapes: only \\\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX are "
             "allowed, and a \\uD800-\\uDBFF escape must be followed by a \\uDC00-\\uDFFF one";
      break;
    case simdjson::UNESCAPED_CHARS: {
      const std::size_t at = find_control_in_string(line);
      hint = "control characters (bytes 0x00 to 0x1F) must be escaped inside strings, e.g. as \\n "
             "or \\u0000";
      if (at != std::string_view::npos) {
        hint += fmt::format(" (byte 0x{:02X} at byte {} of the line)",
                            static_cast<unsigned char>(line[at]), at);
      }
      break;
    }
    case simdjson::UNCLOSED_STRING:
      hint = "a string is missing its closing quote";
      break;
    case simdjson::T_ATOM_ERROR:
    case simdjson::F_ATOM_ERROR:
    case simdjson::N_ATOM_ERROR:
      hint = "true, false and null must be written in full and in lowercase";
      break;
    case simdjson::NUMBER_ERROR:
      hint = "numbers are written like -12, 3.5 or 1e-7 (no leading zeros, no '+', no NaN or "
             "Infinity)";
      break;
    default:
      break;
  }
  info.message = fmt::format("invalid JSON: {}", simdjson::error_message(code));
  if (!hint.empty()) {
    info.message += "; ";
    info.message += hint;
  }
  if (code != simdjson::UNESCAPED_CHARS) {
    if (const void* nul = std::memchr(line.data(), '\0', line.size())) {
      info.message += fmt::format(" (the line holds a NUL byte at byte {})",
                                  static_cast<const char*>(nul) - line.data());
    }
  }
  return info;
}

RecordParser::RecordParser(std::string text_field, std::string output_field)
    : impl_(std::make_unique<Impl>()) {
  impl_->text_field = std::move(text_field);
  impl_->output_field = std::move(output_field);
  append_json_string(impl_->text_field_quoted, impl_->text_field);
  append_json_string(impl_->output_field_quoted, impl_->output_field);
}

void RecordParser::set_allow_empty_text(bool allow) noexcept { impl_->allow_empty_text = allow; }
void RecordParser::set_id_field(std::string id_field) { impl_->id_field = std::move(id_field); }

RecordParser::~RecordParser() = default;
RecordParser::RecordParser(RecordParser&&) noexcept = default;
RecordParser& RecordParser::operator=(RecordParser&&) noexcept = default;

Result<ParsedRecord> RecordParser::parse(std::string_view line) {
  Impl& im = *impl_;
  char* buf = im.padded_copy(line);
  simdjson::dom::element root;
  auto err = im.parser.parse(buf, line.size(), false).get(root);
  if (err == simdjson::NUMBER_ERROR && blank_out_numbers(buf, line.size())) {
    err = im.parser.parse(buf, line.size(), false).get(root);
  }
  if (err) return im.json_error(err, line);

  simdjson::dom::object object;
  if (root.get_object().get(object)) {
    return ErrorInfo{ErrorCode::not_an_object,
                     fmt::format("the record is {}, expected a JSON object", type_name(root.type())),
                     {}, {}};
  }

  bool empty_object = true;
  bool has_text = false;
  bool has_output = false;
  simdjson::dom::element text_value;
  simdjson::dom::element id_value;  // the first id member, if asked for
  bool has_id = false;
  for (const simdjson::dom::key_value_pair member : object) {
    empty_object = false;
    // A field given twice: the last one, as Python's, JavaScript's and most JSON readers show
    // the record (every byte is still kept in the output).
    if (member.key == im.text_field) {
      has_text = true;
      text_value = member.value;
    }
    if (member.key == im.output_field) has_output = true;
    if (!has_id && !im.id_field.empty() && member.key == im.id_field) {
      has_id = true;
      id_value = member.value;
    }
  }

  if (!has_text) {
    return ErrorInfo{ErrorCode::missing_field,
                     fmt::format("field {} is missing", im.text_field_quoted), im.text_field, {}};
  }
  std::string_view text;
  if (text_value.get_string().get(text)) {
    return ErrorInfo{ErrorCode::field_not_string,
                     fmt::format("field {} is {}, expected a string", im.text_field_quoted,
                                 type_name(text_value.type())),
                     im.text_field, {}};
  }
  if (has_output) {
    return ErrorInfo{ErrorCode::output_field_exists,
                     fmt::format("field {} already exists; choose another name with "
                                 "--output-field",
                                 im.output_field_quoted),
                     im.output_field, {}};
  }
  if (im.allow_empty_text) {
    // Tokenising an empty text is well defined (only the special tokens).
  } else if (text.empty()) {
    return ErrorInfo{ErrorCode::empty_text,
                     fmt::format("field {} is empty: nothing to embed", im.text_field_quoted),
                     im.text_field, {}};
  } else if (is_blank_text(text)) {
    return ErrorInfo{ErrorCode::empty_text,
                     fmt::format("field {} holds only whitespace: nothing to embed",
                                 im.text_field_quoted),
                     im.text_field, {}};
  }

  // The line parsed as one object, so after trimming JSON whitespace it ends with '}'.
  std::size_t end = line.size();
  while (end > 0 && is_json_space(line[end - 1])) --end;
  if (end == 0 || line[end - 1] != '}') {
    return ErrorInfo{ErrorCode::internal, "record parsed as an object but does not end with '}'",
                     {}, {}};
  }

  ParsedRecord record;
  record.text.assign(text.data(), text.size());
  record.prefix_length = end - 1;
  record.empty_object = empty_object;
  if (has_id) {
    std::string_view id_text;
    std::int64_t id_int;
    std::uint64_t id_uint;
    if (!id_value.get_string().get(id_text)) {
      append_json_string(record.id_json, id_text);
    } else if (!id_value.get_int64().get(id_int)) {
      record.id_json = fmt::format("{}", id_int);
    } else if (!id_value.get_uint64().get(id_uint)) {
      record.id_json = fmt::format("{}", id_uint);
    }
  }
  return record;
}

}  // namespace sluice
