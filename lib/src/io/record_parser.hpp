#pragma once
// Validates one JSONL record and extracts its text, with simdjson. Thread: whoever owns it
// (not thread-safe; holds a reusable parser and buffer).

#include <memory>
#include <string>
#include <string_view>

#include <sluice/error.hpp>

namespace sluice {

struct ParsedRecord {
  std::string text;          ///< the text field, unescaped (valid UTF-8)
  /// Length of the line's bytes up to, not including, the object's closing brace, with the
  /// whitespace before that brace kept as is. The output line is line[0, prefix_length)
  /// + (empty_object ? "" : ",") + "\"embedding\":[...]}".
  std::size_t prefix_length = 0;
  bool empty_object = false;  ///< the object has no members: no comma before the added field
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

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
