#pragma once
// Formatting of output and dead-letter lines. Thread: any (pure functions).

#include <span>
#include <string>
#include <string_view>

#include <sluice/error.hpp>

namespace sluice {

/// Appends the output line for one record to `out`: the input line's bytes up to its closing
/// brace (`prefix`), then `,"<field>":[v0,v1,...]}` (no comma for an empty object) and "\n".
/// Numbers are the shortest text that reads back as the same float.
void append_output_line(std::string& out, std::string_view prefix, bool empty_object,
                        std::string_view field, std::span<const float> embedding);

/// Appends one dead-letter line: {"file":...,"line":N,"offset":N,"error":"<code name>",
/// "field":...,"message":...,"record":"<the raw line as a JSON string>"} + "\n". A raw line that
/// is not valid UTF-8 is stored as "record_base64" instead, so no byte is lost.
void append_dead_letter_line(std::string& out, const InputLocation& where, const ErrorInfo& error,
                             std::string_view raw_line);

/// Appends `s` as a JSON string literal (quotes included). `s` must be valid UTF-8.
void append_json_string(std::string& out, std::string_view s);

}  // namespace sluice
