#pragma once
// Formatting of output and dead-letter lines. Thread: any (pure functions).

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <sluice/error.hpp>
#include <sluice/vector_format.hpp>

namespace sluice {

/// Appends the output line for one record to `out`: the input line's bytes up to its closing
/// brace (`prefix`), then `,"<field>":[v0,v1,...]}` (no comma for an empty object) and "\n".
/// Numbers are the shortest text that reads back as the same float (fmt's "{}": `0.1`, `-0`,
/// `1`, `1e-05`, `3.4028235e+38`, all valid JSON numbers). JSON has no NaN or infinity: such a
/// value is written as `null` (a model never produces one; this only keeps the line valid).
/// With a VectorFormat other than float32/json, the value is written in that format (see
/// sluice/vector_format.hpp) instead of float32 numbers.
void append_output_line(std::string& out, std::string_view prefix, bool empty_object,
                        std::string_view field, std::span<const float> embedding, VectorFormat format = {});

/// Appends the vector alone in `format`: `[...]` or a base64 string literal.
void append_vector(std::string& out, std::span<const float> embedding, VectorFormat format);

/// IEEE binary16 bits of `f`, rounded to nearest, ties to even (overflow gives infinity, NaN
/// stays NaN), and back.
std::uint16_t float_to_half(float f) noexcept;
float half_to_float(std::uint16_t h) noexcept;

/// Appends one dead-letter line: {"file":...,"line":N,"offset":N,"error":"<code name>",
/// "field":...,"message":...,"record":"<the raw line as a JSON string>"} + "\n". A raw line that
/// is not valid UTF-8 is stored as "record_base64" instead, so no byte is lost.
/// "field" is null when `error.field` is empty. `where.file`, `error.field` and
/// `error.message` are written with any ill-formed UTF-8 replaced by U+FFFD, so the line is
/// always valid JSON. `error.detail` is not written.
void append_dead_letter_line(std::string& out, const InputLocation& where, const ErrorInfo& error,
                             std::string_view raw_line);

/// Appends `s` as a JSON string literal (quotes included), escaped per RFC 8259: `"` and `\`
/// and the control characters below 0x20 (as \b \f \n \r \t, the others as \u00xx); every
/// other well-formed UTF-8 sequence is copied as is. This is json::append_string() from
/// core/json_writer.hpp, which replaces ill-formed UTF-8 with U+FFFD; pass valid UTF-8 to keep
/// every byte.
void append_json_string(std::string& out, std::string_view s);

/// Offset of the first byte of `s` that does not belong to a well-formed UTF-8 sequence
/// (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), or `s.size()` when
/// `s` is valid UTF-8.
std::size_t find_invalid_utf8(std::string_view s) noexcept;

}  // namespace sluice
