#include "added_vocabulary.hpp"

#include <algorithm>

namespace sluice::tok {

namespace {

// The character that ends at byte `pos` of valid UTF-8 `text` (pos > 0).
char32_t char_before(std::string_view text, std::size_t pos) {
  std::size_t b = pos - 1;
  while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
  thread_local Symbols one;
  one.clear();
  decode_utf8(text.substr(b, pos - b), 0, one);
  return one.empty() ? 0 : one.front().c;
}

// The character that starts at byte `pos` of `text` (pos < size).
char32_t char_at(std::string_view text, std::size_t pos) {
  std::size_t e = pos + 1;
  while (e < text.size() && (static_cast<unsigned char>(text[e]) & 0xC0) == 0x80) ++e;
  thread_local Symbols one;
  one.clear();
  decode_utf8(text.substr(pos, e - pos), 0, one);
  return one.empty() ? 0 : one.front().c;
}

std::size_t char_len_before(std::string_view text, std::size_t pos) {
  std::size_t b = pos - 1;
  while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
  return pos - b;
}

std::size_t char_len_at(std::string_view text, std::size_t pos) {
  std::size_t e = pos + 1;
  while (e < text.size() && (static_cast<unsigned char>(text[e]) & 0xC0) == 0x80) ++e;
  return e - pos;
}

}  // namespace

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer)
    : tokens_(std::move(tokens)) {
  for (const AddedToken& t : tokens_) {
    if (t.content.empty()) continue;
    if (!t.normalized) {
      raw_.patterns.push_back({t.content, &t});
      continue;
    }
    Symbols s;
    decode_utf8(t.content, 0, s);
    if (normalizer != nullptr) normalizer->normalize(s, 0);
    std::string text;
    for (const Symbol& sym : s) append_utf8(text, sym.c);
    if (!text.empty()) normalized_.patterns.push_back({std::move(text), &t});
  }
  build(raw_);
  build(normalized_);
}

void AddedVocabulary::build(PatternSet& set) {
  std::stable_sort(set.patterns.begin(), set.patterns.end(),
                   [](const Pattern& a, const Pattern& b) { return a.text.size() > b.text.size(); });
  for (std::uint32_t i = 0; i < set.patterns.size(); ++i) {
    set.by_first_byte[static_cast<unsigned char>(set.patterns[i].text[0])].push_back(i);
  }
}

const AddedToken* AddedVocabulary::find(std::string_view content) const {
  for (const AddedToken& t : tokens_) {
    if (t.content == content) return &t;
  }
  return nullptr;
}

const AddedToken* AddedVocabulary::find(std::int32_t id) const {
  for (const AddedToken& t : tokens_) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

// Hugging Face's AddedVocabulary::find_matches: the non-overlapping leftmost-longest matches;
// a single_word match touching a word character is dropped (and the search goes on after it),
// lstrip/rstrip widen a match over the whitespace next to it.
void AddedVocabulary::find(const PatternSet& set, std::string_view text, std::vector<AddedMatch>& out) {
  const std::size_t n = text.size();
  std::size_t pos = 0;           // where the search goes on
  std::size_t start_offset = 0;  // end of the last kept match
  while (pos < n) {
    const Pattern* hit = nullptr;
    std::size_t start = pos;
    for (; start < n; ++start) {
      for (std::uint32_t i : set.by_first_byte[static_cast<unsigned char>(text[start])]) {
        const std::string& p = set.patterns[i].text;
        if (text.compare(start, p.size(), p) == 0) {
          hit = &set.patterns[i];
          break;
        }
      }
      if (hit != nullptr) break;
    }
    if (hit == nullptr) break;
    std::size_t stop = start + hit->text.size();
    pos = stop;
    const AddedToken& t = *hit->token;
    if (t.single_word) {
      const bool word_before = start > 0 && is_word_char(char_before(text, start));
      const bool word_after = stop < n && is_word_char(char_at(text, stop));
      if (word_before || word_after) continue;
    }
    if (t.lstrip) {
      std::size_t s = start;
      while (s > 0 && is_whitespace(char_before(text, s))) s -= char_len_before(text, s);
      start = std::max(s, start_offset);
    }
    if (t.rstrip) {
      while (stop < n && is_whitespace(char_at(text, stop))) stop += char_len_at(text, stop);
    }
    out.push_back({start, stop, t.id});
    start_offset = stop;
  }
}

void AddedVocabulary::find_in_raw(std::string_view text, std::vector<AddedMatch>& out) const {
  out.clear();
  if (has_raw()) find(raw_, text, out);
}

void AddedVocabulary::find_in_normalized(const Symbols& s, std::vector<AddedMatch>& out) const {
  out.clear();
  if (!has_normalized() || s.empty()) return;
  thread_local std::string text;
  thread_local std::vector<std::uint32_t> pos;  // byte position of each symbol in `text`
  text.clear();
  pos.clear();
  for (const Symbol& sym : s) {
    pos.push_back(static_cast<std::uint32_t>(text.size()));
    append_utf8(text, sym.c);
  }
  pos.push_back(static_cast<std::uint32_t>(text.size()));
  find(normalized_, text, out);
  // Byte ranges to symbol ranges: patterns are whole characters, so both ends are on a boundary.
  for (AddedMatch& m : out) {
    m.begin = static_cast<std::size_t>(std::lower_bound(pos.begin(), pos.end(), m.begin) - pos.begin());
    m.end = static_cast<std::size_t>(std::lower_bound(pos.begin(), pos.end(), m.end) - pos.begin());
  }
}

}  // namespace sluice::tok
