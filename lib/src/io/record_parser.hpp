#pragma once
// Validates one JSONL record and extracts its text, with simdjson. Thread: whoever owns it
// (not thread-safe; holds a reusable parser and buffer).
//
// Rules:
// - The whole line is validated (simdjson DOM): structure, strings, escapes, UTF-8. Numbers
//   outside the range of a double (1e400, 123456789012345678901234567890) are valid JSON and
//   accepted: we never read numbers, and the output keeps the input bytes as they are.
// - Checks, in this order: invalid_utf8 / invalid_json, not_an_object, missing_field,
//   field_not_string, output_field_exists, empty_text.
// - Keys are compared after unescaping ("t\u0065xt" is "text"). With duplicate keys the text
//   field's first occurrence is used (as simdjson's DOM lookup does); the output field is
//   rejected if any occurrence has its name.
// - empty_text: the text is empty or only Unicode White_Space (ASCII space, \t \n \v \f \r,
//   U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
// - simdjson's depth limit is 1024 nested arrays/objects; a deeper record is invalid_json.
// - Steady state allocates nothing but ParsedRecord::text: the padded copy of the line and
//   simdjson's document are reused and grow only for a longer line than seen before.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include <sluice/error.hpp>

namespace sluice {

struct ParsedRecord {
  std::string text;          ///< the text field, unescaped (valid UTF-8)
  /// Length of the line's bytes up to, not including, the object's closing brace, with the
  /// whitespace before that brace kept as is. The output line is line[0, prefix_length)
  /// + (empty_object ? "" : ",") + "\"embedding\":[...]}". Whitespace before the object is
  /// kept (it is in the prefix); whitespace after the closing brace is dropped.
  std::size_t prefix_length = 0;
  bool empty_object = false;  ///< the object has no members: no comma before the added field
  /// The id field's value as JSON (see RecordParser::set_id_field): a string (re-escaped) or
  /// an integer; empty when the record has no such field or it is of another type.
  std::string id_json;
};

class RecordParser {
 public:
  /// `text_field`: the string field to embed. `output_field`: the field the output adds;
  /// a record that already has it is rejected (output_field_exists).
  RecordParser(std::string text_field, std::string output_field);
  ~RecordParser();
  RecordParser(RecordParser&&) noexcept;
  RecordParser& operator=(RecordParser&&) noexcept;

  /// Parses one line (no terminator). Errors carry a message without location, such as
  /// `field "text" is missing`, `invalid JSON: ...`, and `field` set where one is concerned.
  /// Leading/trailing ASCII whitespace around the object is accepted.
  Result<ParsedRecord> parse(std::string_view line);

  /// Accept empty and whitespace-only texts (no empty_text error): for tokenising, where they
  /// are well defined. Off by default.
  void set_allow_empty_text(bool allow) noexcept;

  /// Also extract this field's value into ParsedRecord::id_json (its first occurrence).
  void set_id_field(std::string id_field);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
