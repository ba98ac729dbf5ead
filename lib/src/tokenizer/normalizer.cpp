#include "normalizer.hpp"

#include <algorithm>
#include <string>

namespace sluice::tok {

namespace {

// A per-thread output buffer, swapped with the caller's: no allocation once warm.
Symbols& scratch() {
  thread_local Symbols buf;
  buf.clear();
  return buf;
}

void emit_lowercase(const Symbol& sym, Symbols& out) {
  if (sym.c < 0x80) {
    out.push_back({sym.c >= 'A' && sym.c <= 'Z' ? sym.c + 32 : sym.c, sym.start, sym.end});
    return;
  }
  if ((char_class(sym.c) & kLowercaseChanges) == 0) {
    out.push_back(sym);
    return;
  }
  thread_local std::u32string buf;
  buf.clear();
  append_lowercase(sym.c, buf);
  for (char32_t c : buf) out.push_back({c, sym.start, sym.end});
}

}  // namespace

void canonical_order(Symbols& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    if ((char_class(s[i].c) & kNonStarter) == 0) {
      ++i;
      continue;
    }
    std::size_t j = i + 1;
    while (j < s.size() && (char_class(s[j].c) & kNonStarter) != 0) ++j;
    if (j - i > 1) {
      std::stable_sort(s.begin() + static_cast<std::ptrdiff_t>(i), s.begin() + static_cast<std::ptrdiff_t>(j),
                       [](const Symbol& a, const Symbol& b) { return combining_class(a.c) < combining_class(b.c); });
    }
    i = j;
  }
}

// All four steps in one pass over the text. Each step works character by character, so
// fusing them gives what running them one after the other gives; the one step that looks
// at neighbours, NFD's canonical ordering, only moves non-starters, and dropping the Mn
// ones first leaves the others in the same relative order.
void BertNormalizer::normalize(Symbols& s) const {
  Symbols& out = scratch();
  out.reserve(s.size() + 8);
  bool reorder = false;
  thread_local std::u32string decomposed;
  // strip_accents and lowercase of one character.
  auto accents_and_case = [&](const Symbol& sym, std::uint16_t k) {
    if (strip_accents_) {
      if ((k & kNonspacingMark) != 0) return;
      if ((k & kDecomposes) != 0) {
        decomposed.clear();
        append_nfd(sym.c, decomposed);
        for (char32_t d : decomposed) {
          const std::uint16_t dk = char_class(d);
          if ((dk & kNonspacingMark) != 0) continue;
          reorder = reorder || (dk & kNonStarter) != 0;
          if (lowercase_) {
            emit_lowercase({d, sym.start, sym.end}, out);
          } else {
            out.push_back({d, sym.start, sym.end});
          }
        }
        return;
      }
      reorder = reorder || (k & kNonStarter) != 0;
    }
    if (lowercase_) {
      emit_lowercase(sym, out);
    } else {
      out.push_back(sym);
    }
  };
  for (const Symbol& sym : s) {
    const char32_t c = sym.c;
    const std::uint16_t k = char_class(c);
    if (clean_text_) {
      if (c == 0 || c == 0xFFFD || ((k & kControl) != 0 && c != '\t' && c != '\n' && c != '\r')) continue;
      if ((k & kWhitespace) != 0) {
        out.push_back({' ', sym.start, sym.end});
        continue;
      }
    }
    if (handle_chinese_chars_ && (k & kChinese) != 0) {
      out.push_back({' ', sym.start, sym.end});
      accents_and_case(sym, k);  // compatibility ideographs (U+F900...) decompose
      out.push_back({' ', sym.start, sym.end});
      continue;
    }
    accents_and_case(sym, k);
  }
  if (reorder) canonical_order(out);
  s.swap(out);
}

void LowercaseNormalizer::normalize(Symbols& s) const {
  Symbols& out = scratch();
  out.reserve(s.size() + 4);
  for (const Symbol& sym : s) emit_lowercase(sym, out);
  s.swap(out);
}

void NfdNormalizer::normalize(Symbols& s) const {
  Symbols& out = scratch();
  out.reserve(s.size() + 8);
  thread_local std::u32string decomposed;
  for (const Symbol& sym : s) {
    if ((char_class(sym.c) & kDecomposes) == 0) {
      out.push_back(sym);
      continue;
    }
    decomposed.clear();
    append_nfd(sym.c, decomposed);
    for (char32_t d : decomposed) out.push_back({d, sym.start, sym.end});
  }
  canonical_order(out);
  s.swap(out);
}

void StripAccentsNormalizer::normalize(Symbols& s) const {
  std::erase_if(s, [](const Symbol& sym) { return sym.c >= 0x300 && is_mark(sym.c); });
}

}  // namespace sluice::tok
