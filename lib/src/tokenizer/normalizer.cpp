#include "normalizer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <sluice/error.hpp>
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

// NFD/NFKD as the `unicode-normalization-alignments` crate produces it, as (character, change)
// pairs for Transform: each decomposition gives its first character change 0 and the others +1,
// and canonical ordering moves the pairs. The ranges are then given by position, as Hugging
// Face's transform gives them, not carried by the characters.
void decompose(Symbols& s, std::uint32_t base, bool compat) {
  struct Item {
    char32_t c;
    std::ptrdiff_t change;
    int ccc;
  };
  thread_local std::vector<Item> items;
  thread_local std::u32string decomposed;
  const std::uint16_t decomposes = compat ? kCompatDecomposes : kDecomposes;
  bool changed = false;
  int last_ccc = 0;
  for (const Symbol& sym : s) {
    const std::uint16_t k = char_class(sym.c);
    if ((k & (decomposes | kNonStarter)) == 0) {
      last_ccc = 0;
      continue;
    }
    if ((k & decomposes) != 0) {
      changed = true;
      break;
    }
    const int ccc = combining_class(sym.c);
    if (ccc < last_ccc) {
      changed = true;
      break;
    }
    last_ccc = ccc;
  }
  if (!changed) return;
  items.clear();
  for (const Symbol& sym : s) {
    if ((char_class(sym.c) & decomposes) == 0) {
      items.push_back({sym.c, 0, combining_class(sym.c)});
      continue;
    }
    decomposed.clear();
    if (compat) {
      append_nfkd(sym.c, decomposed);
    } else {
      append_nfd(sym.c, decomposed);
    }
    for (std::size_t i = 0; i < decomposed.size(); ++i) {
      items.push_back({decomposed[i], i == 0 ? 0 : 1, combining_class(decomposed[i])});
    }
  }
  for (std::size_t i = 0; i < items.size();) {
    if (items[i].ccc == 0) {
      ++i;
      continue;
    }
    std::size_t j = i + 1;
    while (j < items.size() && items[j].ccc != 0) ++j;
    if (j - i > 1) {
      std::stable_sort(items.begin() + static_cast<std::ptrdiff_t>(i), items.begin() + static_cast<std::ptrdiff_t>(j),
                       [](const Item& a, const Item& b) { return a.ccc < b.ccc; });
    }
    i = j;
  }
  Symbols& out = scratch();
  out.reserve(items.size());
  Transform t(s, out, base);
  for (const Item& it : items) t.emit(it.c, it.change);
  s.swap(out);
}

template <typename Emit>
void BertNormalizer::clean_and_space(const Symbols& s, Symbols& out, Emit&& emit) const {
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
      emit(sym, k);
      out.push_back({' ', sym.start, sym.end});
      continue;
    }
    emit(sym, k);
  }
}

// All four steps in one pass over the text. Each step works character by character, so
// fusing them gives what running them one after the other gives, as long as no character is
// moved: each output character then has the range of the character it came from, as in
// Hugging Face. The one step that looks at neighbours, NFD's canonical ordering, moves
// non-starters; when one survives the Mn filter (a mark Hugging Face's Unicode 8 tables do not
// class Mn, such as U+08D4, U+1B44, U+302E or U+1D165), reordering may apply, and Hugging
// Face's ranges then stay with the positions, not with the moved characters (they are given
// before the Mn filter, which may leave a survivor with a dropped mark's range): the steps
// are then run one after the other (normalize_in_steps). Carrying the ranges with the moved
// characters gave tokens ranges out of order, even empty or reversed ones (" " U+08D4 U+1B44,
// 7 bytes, gave [UNK] at [4, 4) where Hugging Face gives [1, 7)).
void BertNormalizer::normalize(Symbols& s, std::uint32_t base) const {
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
  // Compatibility ideographs (U+F900...) decompose too.
  clean_and_space(s, out, accents_and_case);
  if (reorder) {
    normalize_in_steps(s, base);
    return;
  }
  s.swap(out);
}

// The four steps one after the other, with Hugging Face's ranges: clean_text and
// handle_chinese_chars keep each character's range; NFD (decompose) gives the ranges by
// position, as Hugging Face's transform does, so canonical ordering moves characters but not
// ranges; the Mn filter and lowercase keep each character's range.
void BertNormalizer::normalize_in_steps(Symbols& s, std::uint32_t base) const {
  Symbols& out = scratch();
  out.reserve(s.size() + 8);
  clean_and_space(s, out, [&out](const Symbol& sym, std::uint16_t) { out.push_back(sym); });
  s.swap(out);
  if (strip_accents_) {
    decompose(s, base, false);
    std::erase_if(s, [](const Symbol& sym) { return (char_class(sym.c) & kNonspacingMark) != 0; });
  }
  if (lowercase_) {
    Symbols& lower = scratch();
    lower.reserve(s.size() + 4);
    for (const Symbol& sym : s) emit_lowercase(sym, lower);
    s.swap(lower);
  }
}

void LowercaseNormalizer::normalize(Symbols& s, std::uint32_t /*base*/) const {
  Symbols& out = scratch();
  out.reserve(s.size() + 4);
  for (const Symbol& sym : s) emit_lowercase(sym, out);
  s.swap(out);
}

void NfdNormalizer::normalize(Symbols& s, std::uint32_t base) const { decompose(s, base, false); }

void StripAccentsNormalizer::normalize(Symbols& s, std::uint32_t /*base*/) const {
  std::erase_if(s, [](const Symbol& sym) { return sym.c >= 0x300 && is_mark(sym.c); });
}

void Transform::emit(char32_t c, std::ptrdiff_t change) {
  if (change > 0) {
    if (pos_ == 0) {
      out_.push_back({c, base_, base_});
    } else {
      out_.push_back({c, old_[pos_ - 1].start, old_[pos_ - 1].end});
    }
    return;
  }
  if (pos_ < old_.size()) {
    out_.push_back({c, old_[pos_].start, old_[pos_].end});
    ++pos_;
  } else if (!old_.empty()) {  // Hugging Face would fail here; never reached by its own callers
    out_.push_back({c, old_.back().start, old_.back().end});
  } else {
    out_.push_back({c, base_, base_});
  }
  skip(static_cast<std::size_t>(-change));
}

void NfkdNormalizer::normalize(Symbols& s, std::uint32_t base) const { decompose(s, base, true); }

// NFC/NFKC as the `unicode-normalization-alignments` crate produces it, as (character, change)
// pairs for Transform: each decomposition gives its first character change 0 and the others +1;
// canonical ordering moves the pairs; a character composed into the starter before it leaves the
// composite with the sum of both changes minus one.
void NfcNormalizer::normalize(Symbols& s, std::uint32_t base) const {
  struct Item {
    char32_t c;
    std::ptrdiff_t change;
    int ccc;
  };
  thread_local std::vector<Item> items;
  thread_local std::vector<Item> composed;
  thread_local std::u32string decomposed;
  items.clear();
  bool trivial = true;
  for (const Symbol& sym : s) {
    const std::uint16_t k = char_class(sym.c);
    if ((k & (compat_ ? kCompatDecomposes : kDecomposes)) == 0) {
      items.push_back({sym.c, 0, (k & kNonStarter) != 0 ? combining_class(sym.c) : 0});
      if (sym.c >= 0x300) trivial = false;  // might compose with what precedes it
      continue;
    }
    trivial = false;
    decomposed.clear();
    if (compat_) {
      append_nfkd(sym.c, decomposed);
    } else {
      append_nfd(sym.c, decomposed);
    }
    for (std::size_t i = 0; i < decomposed.size(); ++i) {
      items.push_back({decomposed[i], i == 0 ? 0 : 1, combining_class(decomposed[i])});
    }
  }
  if (trivial) return;
  // Canonical ordering of every run of non-starters.
  for (std::size_t i = 0; i < items.size();) {
    if (items[i].ccc == 0) {
      ++i;
      continue;
    }
    std::size_t j = i + 1;
    while (j < items.size() && items[j].ccc != 0) ++j;
    if (j - i > 1) {
      std::stable_sort(items.begin() + static_cast<std::ptrdiff_t>(i), items.begin() + static_cast<std::ptrdiff_t>(j),
                       [](const Item& a, const Item& b) { return a.ccc < b.ccc; });
    }
    i = j;
  }
  // Canonical composition.
  composed.clear();
  std::ptrdiff_t starter = -1;
  int last_ccc = -1;  // combining class of the last character after the starter; -1: none yet
  for (const Item& it : items) {
    if (starter >= 0 && (last_ccc == -1 || (last_ccc != 0 && last_ccc < it.ccc))) {
      Item& st = composed[static_cast<std::size_t>(starter)];
      if (const char32_t comp = compose_pair(st.c, it.c); comp != 0) {
        st.c = comp;
        st.change += it.change - 1;
        continue;
      }
    }
    if (it.ccc == 0) {
      starter = static_cast<std::ptrdiff_t>(composed.size());
      last_ccc = -1;
    } else {
      last_ccc = it.ccc;
    }
    composed.push_back(it);
  }
  Symbols& out = scratch();
  out.reserve(composed.size());
  Transform t(s, out, base);
  for (const Item& it : composed) t.emit(it.c, it.change);
  s.swap(out);
}

void ReplaceNormalizer::normalize(Symbols& s, std::uint32_t base) const {
  thread_local std::u32string text;
  thread_local std::vector<std::pair<std::size_t, std::size_t>> matches;
  text.clear();
  matches.clear();
  for (const Symbol& sym : s) text.push_back(sym.c);
  if (regex_) {
    regex_->find_all(text, matches);
  } else {
    for (std::size_t at = text.find(literal_); at != std::u32string::npos;
         at = text.find(literal_, at + literal_.size())) {
      matches.emplace_back(at, at + literal_.size());
    }
  }
  if (matches.empty()) return;
  Symbols& out = scratch();
  out.reserve(s.size() + content_.size() * matches.size());
  Transform t(s, out, base);
  for (auto [b, e] : matches) {
    while (t.position() < b) t.keep();
    t.skip(e - b);
    for (char32_t c : content_) t.emit(c, 1);
  }
  while (t.position() < s.size()) t.keep();
  s.swap(out);
}

void PrependNormalizer::normalize(Symbols& s, std::uint32_t /*base*/) const {
  if (s.empty() || prefix_.empty()) return;
  Symbols& out = scratch();
  out.reserve(s.size() + prefix_.size());
  for (char32_t c : prefix_) out.push_back({c, s[0].start, s[0].end});
  out.insert(out.end(), s.begin(), s.end());
  s.swap(out);
}

void StripNormalizer::normalize(Symbols& s, std::uint32_t /*base*/) const {
  std::size_t b = 0, e = s.size();
  if (left_) {
    while (b < e && is_whitespace(s[b].c)) ++b;
  }
  if (right_) {
    while (e > b && is_whitespace(s[e - 1].c)) --e;
  }
  if (b == 0 && e == s.size()) return;
  s.erase(s.begin() + static_cast<std::ptrdiff_t>(e), s.end());
  s.erase(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(b));
}

PrecompiledNormalizer::PrecompiledNormalizer(std::string charsmap) {
  auto bad = [](std::string_view what) {
    throw Error(ErrorCode::invalid_model, fmt::format("tokenizer.json: Precompiled normalizer: {}", what));
  };
  if (charsmap.size() < 4) bad("precompiled_charsmap is too short");
  auto u32 = [&](std::size_t at) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(charsmap[at])) |
           static_cast<std::uint32_t>(static_cast<unsigned char>(charsmap[at + 1])) << 8 |
           static_cast<std::uint32_t>(static_cast<unsigned char>(charsmap[at + 2])) << 16 |
           static_cast<std::uint32_t>(static_cast<unsigned char>(charsmap[at + 3])) << 24;
  };
  const std::uint32_t trie_bytes = u32(0);
  if (trie_bytes % 4 != 0 || 4 + static_cast<std::size_t>(trie_bytes) > charsmap.size() || trie_bytes == 0) {
    bad("precompiled_charsmap has a malformed trie size");
  }
  trie_.resize(trie_bytes / 4);
  for (std::size_t i = 0; i < trie_.size(); ++i) trie_[i] = u32(4 + i * 4);
  normalized_ = charsmap.substr(4 + trie_bytes);
}

// Darts-clone's double array, as spm_precompiled reads it.
std::optional<std::string_view> PrecompiledNormalizer::transform(std::string_view bytes) const {
  auto offset = [](std::uint32_t unit) { return (unit >> 10) << ((unit & (1u << 9)) >> 6); };
  auto label = [](std::uint32_t unit) { return unit & ((1u << 31) | 0xFF); };
  auto has_leaf = [](std::uint32_t unit) { return ((unit >> 8) & 1) == 1; };
  auto value = [](std::uint32_t unit) { return unit & ((1u << 31) - 1); };
  std::size_t node = 0;
  std::uint32_t unit = trie_[node];
  node ^= offset(unit);
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == 0) break;
    node ^= c;
    if (node >= trie_.size()) return std::nullopt;
    unit = trie_[node];
    if (label(unit) != c) return std::nullopt;
    node ^= offset(unit);
    if (has_leaf(unit)) {
      if (node >= trie_.size()) return std::nullopt;
      const std::size_t at = value(trie_[node]);
      if (at > normalized_.size()) return std::nullopt;
      const std::size_t end = normalized_.find('\0', at);
      return std::string_view(normalized_).substr(at, (end == std::string::npos ? normalized_.size() : end) - at);
    }
  }
  return std::nullopt;
}

void PrecompiledNormalizer::normalize(Symbols& s, std::uint32_t base) const {
  if (s.empty()) return;
  thread_local std::string bytes;
  thread_local Symbols repl;
  thread_local std::vector<std::pair<char32_t, std::ptrdiff_t>> changes;
  changes.clear();
  bool modified = false;
  // Appends the replacement `norm` of `old_count` characters with Hugging Face's changes: all 0,
  // then the last (new - old) ones +1 when it is longer; when it is shorter, the change of the
  // last character pushed so far (which may belong to an earlier replacement) drops by the
  // difference, so that it removes the characters that follow it.
  auto push_replacement = [&](std::string_view norm, std::size_t old_count) {
    repl.clear();
    decode_utf8(norm, 0, repl);
    for (const Symbol& r : repl) changes.emplace_back(r.c, 0);
    const auto diff = static_cast<std::ptrdiff_t>(repl.size()) - static_cast<std::ptrdiff_t>(old_count);
    if (diff > 0) {
      for (std::size_t k = 0; k < static_cast<std::size_t>(diff); ++k) changes[changes.size() - 1 - k].second = 1;
    } else if (diff < 0 && !changes.empty()) {
      changes.back().second += diff;
    }
  };
  std::int32_t state = 0;
  std::size_t g = 0;
  while (g < s.size()) {
    std::size_t e = g + 1;
    while (e < s.size() && !grapheme_break(s[e - 1].c, s[e].c, state)) ++e;
    bytes.clear();
    for (std::size_t i = g; i < e; ++i) append_utf8(bytes, s[i].c);
    if (bytes.size() < 6) {
      if (auto norm = transform(bytes)) {
        modified = true;
        push_replacement(*norm, e - g);
        g = e;
        continue;
      }
    }
    for (std::size_t i = g; i < e; ++i) {
      bytes.clear();
      append_utf8(bytes, s[i].c);
      if (auto norm = transform(bytes)) {
        modified = true;
        push_replacement(*norm, 1);
      } else {
        changes.emplace_back(s[i].c, 0);
      }
    }
    g = e;
  }
  if (!modified) return;
  Symbols& out = scratch();
  out.reserve(changes.size());
  Transform t(s, out, base);
  for (auto [c, change] : changes) t.emit(c, change);
  s.swap(out);
}

}  // namespace sluice::tok
