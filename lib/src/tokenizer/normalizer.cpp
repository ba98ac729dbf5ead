#include "normalizer.hpp"

#include <algorithm>

namespace sluice::tok {

void clean_text(Symbols& s) {
  std::size_t w = 0;
  for (std::size_t r = 0; r < s.size(); ++r) {
    Symbol sym = s[r];
    const char32_t c = sym.c;
    if (c == 0 || c == 0xFFFD) continue;
    const bool control = c != '\t' && c != '\n' && c != '\r' && is_other(c);
    if (control) continue;
    if (is_whitespace(c)) sym.c = ' ';
    s[w++] = sym;
  }
  s.resize(w);
}

void pad_chinese_chars(Symbols& s) {
  bool any = false;
  for (const auto& sym : s) {
    if (is_chinese_char(sym.c)) {
      any = true;
      break;
    }
  }
  if (!any) return;
  Symbols out;
  out.reserve(s.size() + 16);
  for (const auto& sym : s) {
    if (is_chinese_char(sym.c)) {
      out.push_back({' ', sym.start, sym.end});
      out.push_back(sym);
      out.push_back({' ', sym.start, sym.end});
    } else {
      out.push_back(sym);
    }
  }
  s.swap(out);
}

void nfd(Symbols& s) {
  bool any = false;
  for (const auto& sym : s) {
    if (sym.c >= 0xC0) {
      any = true;
      break;
    }
  }
  if (!any) return;
  Symbols out;
  out.reserve(s.size() + 8);
  std::u32string buf;
  for (const auto& sym : s) {
    buf.clear();
    append_nfd(sym.c, buf);
    for (char32_t c : buf) out.push_back({c, sym.start, sym.end});
  }
  // Canonical ordering: runs of non-starters are stably sorted by combining class.
  std::size_t i = 0;
  while (i < out.size()) {
    if (combining_class(out[i].c) == 0) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < out.size() && combining_class(out[j].c) != 0) ++j;
    if (j - i > 1) {
      std::stable_sort(out.begin() + static_cast<std::ptrdiff_t>(i), out.begin() + static_cast<std::ptrdiff_t>(j),
                       [](const Symbol& a, const Symbol& b) { return combining_class(a.c) < combining_class(b.c); });
    }
    i = j;
  }
  s.swap(out);
}

void drop_nonspacing_marks(Symbols& s) {
  std::erase_if(s, [](const Symbol& sym) { return sym.c >= 0x300 && is_mark_nonspacing(sym.c); });
}

void lowercase(Symbols& s) {
  bool multi = false;
  for (auto& sym : s) {
    if (sym.c == 0x130) {
      multi = true;
      continue;
    }
    std::u32string one;
    if (sym.c < 0x80) {
      if (sym.c >= 'A' && sym.c <= 'Z') sym.c += 32;
      continue;
    }
    append_lowercase(sym.c, one);
    sym.c = one[0];
  }
  if (!multi) return;
  Symbols out;
  out.reserve(s.size() + 4);
  std::u32string buf;
  for (const auto& sym : s) {
    if (sym.c != 0x130) {
      out.push_back(sym);
      continue;
    }
    buf.clear();
    append_lowercase(sym.c, buf);
    for (char32_t c : buf) out.push_back({c, sym.start, sym.end});
  }
  s.swap(out);
}

void BertNormalizer::normalize(Symbols& s) const {
  if (clean_text_) clean_text(s);
  if (handle_chinese_chars_) pad_chinese_chars(s);
  if (strip_accents_) {
    nfd(s);
    drop_nonspacing_marks(s);
  }
  if (lowercase_) lowercase(s);
}

void LowercaseNormalizer::normalize(Symbols& s) const { lowercase(s); }
void NfdNormalizer::normalize(Symbols& s) const { nfd(s); }
void StripAccentsNormalizer::normalize(Symbols& s) const { drop_nonspacing_marks(s); }

}  // namespace sluice::tok
