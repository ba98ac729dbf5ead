#include "unicode.hpp"

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <iterator>
#include <memory>

namespace sluice::tok {

namespace {

struct Exception {
  char32_t first, last;
  bool control, punctuation, nonspacing_mark, mark, word, no_decomposition, no_compat_decomposition, letter, number,
      starter;
  std::int32_t lowercase_delta;
};

constexpr Exception kExceptions[] = {
#include "unicode_exceptions.inc"
};

const Exception* find_exception(char32_t c) {
  auto it = std::upper_bound(std::begin(kExceptions), std::end(kExceptions), c,
                             [](char32_t v, const Exception& e) { return v < e.first; });
  if (it == std::begin(kExceptions)) return nullptr;
  --it;
  return c <= it->last ? &*it : nullptr;
}

utf8proc_category_t category(char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)); }

bool is_ascii_punctuation(char32_t c) {
  return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
}

// The ranges of Hugging Face's BertNormalizer is_chinese_char (note 0x2B920, not 0x2B820).
bool in_chinese_ranges(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

char32_t simple_lowercase(char32_t c) {
  if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
  if (const Exception* e = find_exception(c))
    return static_cast<char32_t>(static_cast<std::int32_t>(c) + e->lowercase_delta);
  return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c)));
}

bool utf8proc_decomposes(char32_t c) {
  if (c < 0xC0) return false;
  const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(c));
  if (c >= 0xAC00 && c <= 0xD7A3) return true;  // Hangul syllables decompose algorithmically
  return p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0;
}

std::uint16_t compute_class(char32_t c) {
  std::uint16_t k = 0;
  const utf8proc_category_t cat = category(c);
  if (c == ' ' || (c >= 0x09 && c <= 0x0D) || c == 0x85 || cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL ||
      cat == UTF8PROC_CATEGORY_ZP) {
    k |= kWhitespace;
  }
  bool control = cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CO;
  bool punct = is_ascii_punctuation(c) || (cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO);
  bool mn = cat == UTF8PROC_CATEGORY_MN;
  bool mark = cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_MC || cat == UTF8PROC_CATEGORY_ME;
  // Regex \w: Alphabetic, marks, decimal digits, connector punctuation, join controls.
  bool word = (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_ND) || cat == UTF8PROC_CATEGORY_NL ||
              cat == UTF8PROC_CATEGORY_PC || c == 0x200C || c == 0x200D;
  bool decomposes = utf8proc_decomposes(c);
  bool letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
  bool number = cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO;
  bool compat = c >= 0xA0 && utf8proc_get_property(static_cast<utf8proc_int32_t>(c))->decomp_seqindex != UINT16_MAX;
  if (const Exception* e = find_exception(c)) {
    control = e->control;
    punct = e->punctuation;
    mn = e->nonspacing_mark;
    mark = e->mark;
    word = e->word;
    decomposes = decomposes && !e->no_decomposition;
    compat = compat && !e->no_decomposition && !e->no_compat_decomposition;
    letter = e->letter;
    number = e->number;
  }
  if (control) k |= kControl;
  if (punct) k |= kPunctuation;
  if (mn) k |= kNonspacingMark;
  if (mark) k |= kMark;
  if (word) k |= kWordChar;
  if (decomposes) k |= kDecomposes;
  if (in_chinese_ranges(c)) k |= kChinese;
  if (c == 0x130 || simple_lowercase(c) != c) k |= kLowercaseChanges;
  if (combining_class(c) != 0) k |= kNonStarter;
  if (letter) k |= kLetter;
  if (number) k |= kNumber;
  if (decomposes || compat) k |= kCompatDecomposes;
  return k;
}

// Classes of the Basic Multilingual Plane, computed once; other planes are computed per call.
const std::array<std::uint16_t, 0x10000>& bmp_classes() {
  static const auto table = [] {
    auto t = std::make_unique<std::array<std::uint16_t, 0x10000>>();
    for (char32_t c = 0; c < 0x10000; ++c) (*t)[c] = compute_class(c);
    return t;
  }();
  return *table;
}

}  // namespace

std::uint16_t char_class(char32_t c) {
  if (c < 0x10000) return bmp_classes()[c];
  if (c > 0x10FFFF) return 0;
  return compute_class(c);
}

void decode_utf8(std::string_view text, std::uint32_t base, Symbols& out) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const std::uint8_t b = p[i];
    const auto at = base + static_cast<std::uint32_t>(i);
    if (b < 0x80) {
      out.push_back({b, at, at + 1});
      ++i;
      continue;
    }
    utf8proc_int32_t cp = 0;
    const utf8proc_ssize_t len = utf8proc_iterate(p + i, static_cast<utf8proc_ssize_t>(n - i), &cp);
    if (len <= 0) {
      out.push_back({0xFFFD, at, at + 1});
      ++i;
      continue;
    }
    out.push_back({static_cast<char32_t>(cp), at, at + static_cast<std::uint32_t>(len)});
    i += static_cast<std::size_t>(len);
  }
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

void append_lowercase(char32_t c, std::u32string& out) {
  if (c == 0x130) {  // LATIN CAPITAL LETTER I WITH DOT ABOVE: the one unconditional multi-char mapping
    out.push_back('i');
    out.push_back(0x307);
    return;
  }
  out.push_back(simple_lowercase(c));
}

void append_nfd(char32_t c, std::u32string& out) {
  if ((char_class(c) & kDecomposes) == 0) {
    out.push_back(c);
    return;
  }
  utf8proc_int32_t buf[32];
  int last_boundclass = 0;
  const utf8proc_ssize_t n =
      utf8proc_decompose_char(static_cast<utf8proc_int32_t>(c), buf, 32, UTF8PROC_DECOMPOSE, &last_boundclass);
  if (n <= 0 || n > 32) {
    out.push_back(c);
    return;
  }
  for (utf8proc_ssize_t i = 0; i < n; ++i) out.push_back(static_cast<char32_t>(buf[i]));
}

void append_nfkd(char32_t c, std::u32string& out) {
  if ((char_class(c) & kCompatDecomposes) == 0) {
    out.push_back(c);
    return;
  }
  utf8proc_int32_t buf[32];
  int last_boundclass = 0;
  const utf8proc_ssize_t n =
      utf8proc_decompose_char(static_cast<utf8proc_int32_t>(c), buf, 32,
                              static_cast<utf8proc_option_t>(UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT), &last_boundclass);
  if (n <= 0 || n > 32) {
    out.push_back(c);
    return;
  }
  for (utf8proc_ssize_t i = 0; i < n; ++i) out.push_back(static_cast<char32_t>(buf[i]));
}

char32_t compose_pair(char32_t first, char32_t second) {
  const bool jamo = (second >= 0x1161 && second <= 0x1175) || (second >= 0x11A8 && second <= 0x11C2);
  if (!jamo && (second < 0x300 || second > 0x10FFFF ||
                utf8proc_get_property(static_cast<utf8proc_int32_t>(second))->comb_index == UINT16_MAX)) {
    return 0;
  }
  utf8proc_int32_t buf[2] = {static_cast<utf8proc_int32_t>(first), static_cast<utf8proc_int32_t>(second)};
  if (utf8proc_normalize_utf32(buf, 2, UTF8PROC_COMPOSE) != 1) return 0;
  const auto composite = static_cast<char32_t>(buf[0]);
  if (utf8proc_get_property(buf[0])->comp_exclusion) return 0;
  // A composite that Hugging Face's (older) tables do not decompose is not formed either.
  if (const Exception* e = find_exception(composite); e != nullptr && e->no_decomposition) return 0;
  return composite;
}

bool grapheme_break(char32_t previous, char32_t c, std::int32_t& state) {
  return utf8proc_grapheme_break_stateful(static_cast<utf8proc_int32_t>(previous), static_cast<utf8proc_int32_t>(c),
                                          &state);
}

int combining_class(char32_t c) {
  if (c < 0x300) return 0;
  const int ccc = utf8proc_get_property(static_cast<utf8proc_int32_t>(c))->combining_class;
  if (ccc != 0) {
    if (const Exception* e = find_exception(c); e != nullptr && e->starter) return 0;
  }
  return ccc;
}

}  // namespace sluice::tok
