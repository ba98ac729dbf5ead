#pragma once
// Unicode helpers for the tokenizer, on top of utf8proc (categories, case, decomposition).
// A "symbol" is one code point with the byte range of the original text it came from, so
// offsets survive normalisation.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::tok {

struct Symbol {
  char32_t c;
  std::uint32_t start;  // byte range [start, end) in the original text
  std::uint32_t end;
};

using Symbols = std::vector<Symbol>;

/// Decodes valid UTF-8 into symbols with byte offsets (starting at `base`). Invalid bytes
/// become U+FFFD covering one byte.
void decode_utf8(std::string_view text, std::uint32_t base, Symbols& out);
/// Appends the UTF-8 encoding of `c`.
void append_utf8(std::string& out, char32_t c);

/// Rust's char::is_whitespace (the White_Space property): Zs, Zl, Zp, \t..\r and U+0085.
bool is_whitespace(char32_t c);
/// General category "C*" (control, format, unassigned, private use, surrogate).
bool is_other(char32_t c);
/// General category "P*".
bool is_punctuation(char32_t c);
bool is_ascii_punctuation(char32_t c);
/// General category "Mn".
bool is_mark_nonspacing(char32_t c);
/// The CJK ideograph blocks that BERT surrounds with spaces.
bool is_chinese_char(char32_t c);
/// Full lowercase mapping, as Rust's char::to_lowercase (U+0130 gives two code points).
void append_lowercase(char32_t c, std::u32string& out);
/// Canonical decomposition of one code point (Hangul included), without reordering.
void append_nfd(char32_t c, std::u32string& out);
/// Canonical combining class.
int combining_class(char32_t c);

}  // namespace sluice::tok
