#include "pre_tokenizer.hpp"

#include <algorithm>
#include <array>

namespace sluice::tok {

namespace {

std::vector<Span>& scratch() {
  thread_local std::vector<Span> buf;
  buf.clear();
  return buf;
}

// Splits every span: characters with any of `removed` bits are dropped, characters with any
// of `isolated` bits become one-character words.
void split(const Symbols& s, std::vector<Span>& words, std::uint16_t removed, std::uint16_t isolated) {
  std::vector<Span>& out = scratch();
  out.reserve(words.size() * 2 + 8);
  for (auto [b, e] : words) {
    std::size_t start = b;
    for (std::size_t i = b; i < e; ++i) {
      const std::uint16_t k = char_class(s[i].c);
      if ((k & removed) != 0) {
        if (i > start) out.emplace_back(start, i);
        start = i + 1;
      } else if ((k & isolated) != 0) {
        if (i > start) out.emplace_back(start, i);
        out.emplace_back(i, i + 1);
        start = i + 1;
      }
    }
    if (e > start) out.emplace_back(start, e);
  }
  words.swap(out);
}

Symbols& symbol_scratch() {
  thread_local Symbols buf;
  buf.clear();
  return buf;
}

// One piece of a word: [begin, end) symbols, and whether it is a delimiter match.
struct Segment {
  std::size_t begin, end;
  bool match;
};

// Hugging Face's NormalizedString::split: turns the segments (matches and the text between them,
// in order, covering the word) into words according to `behavior`; empty words are dropped.
void apply_behavior(const std::vector<Segment>& segs, SplitBehavior behavior, std::vector<Span>& out) {
  thread_local std::vector<Segment> acc;
  acc.clear();
  switch (behavior) {
    case SplitBehavior::kIsolated:
      acc = segs;
      break;
    case SplitBehavior::kRemoved:
      for (const Segment& g : segs) {
        if (!g.match) acc.push_back(g);
      }
      break;
    case SplitBehavior::kContiguous: {
      bool previous = false;
      for (const Segment& g : segs) {
        if (g.match == previous && !acc.empty()) {
          acc.back().end = g.end;
        } else {
          acc.push_back(g);
        }
        previous = g.match;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous = false;
      for (const Segment& g : segs) {
        if (g.match && !previous && !acc.empty()) {
          acc.back().end = g.end;
        } else {
          acc.push_back(g);
        }
        previous = g.match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous = false;
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->match && !previous && !acc.empty()) {
          acc.back().begin = it->begin;
        } else {
          acc.push_back(*it);
        }
        previous = it->match;
      }
      std::reverse(acc.begin(), acc.end());
      break;
    }
  }
  for (const Segment& g : acc) {
    if (g.end > g.begin) out.emplace_back(g.begin, g.end);
  }
}

// Segments of [b, e) for single-character matches of `is_match`.
template <typename Pred>
void char_segments(const Symbols& s, std::size_t b, std::size_t e, Pred is_match, std::vector<Segment>& segs) {
  segs.clear();
  std::size_t last = b;
  for (std::size_t i = b; i < e; ++i) {
    if (!is_match(s[i].c)) continue;
    if (last < i) segs.push_back({last, i, false});
    segs.push_back({i, i + 1, true});
    last = i + 1;
  }
  if (last < e) segs.push_back({last, e, false});
}

std::array<char32_t, 256> make_byte_chars() {
  std::array<char32_t, 256> out{};
  std::array<bool, 256> printable{};
  for (int b = '!'; b <= '~'; ++b) printable[static_cast<std::size_t>(b)] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) printable[static_cast<std::size_t>(b)] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) printable[static_cast<std::size_t>(b)] = true;
  char32_t next = 256;
  for (std::size_t b = 0; b < 256; ++b) out[b] = printable[b] ? static_cast<char32_t>(b) : next++;
  return out;
}

bool is_letter(char32_t c) { return (char_class(c) & kLetter) != 0; }
bool is_number(char32_t c) { return (char_class(c) & kNumber) != 0; }
bool is_other(char32_t c) { return (char_class(c) & (kLetter | kNumber | kWhitespace)) == 0; }

// End of the GPT-2 pattern's match that starts at `i` (there is always one, of at least one
// character): 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
std::size_t gpt2_match(const Symbols& s, std::size_t i, std::size_t e) {
  const char32_t c = s[i].c;
  auto run = [&](std::size_t from, auto pred) {
    while (from < e && pred(s[from].c)) ++from;
    return from;
  };
  if (c == '\'' && i + 1 < e) {
    const char32_t c1 = s[i + 1].c;
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
    if (i + 2 < e) {
      const char32_t c2 = s[i + 2].c;
      if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return i + 3;
    }
  }
  const std::uint16_t k = char_class(c);
  const bool space = c == ' ' && i + 1 < e;
  if ((k & kLetter) != 0) return run(i + 1, is_letter);
  if (space && is_letter(s[i + 1].c)) return run(i + 2, is_letter);
  if ((k & kNumber) != 0) return run(i + 1, is_number);
  if (space && is_number(s[i + 1].c)) return run(i + 2, is_number);
  if ((k & (kLetter | kNumber | kWhitespace)) == 0) return run(i + 1, is_other);
  if (space && is_other(s[i + 1].c)) return run(i + 2, is_other);
  // Whitespace: \s+(?!\S) keeps the last space for the word that follows, else \s+.
  const std::size_t j = run(i + 1, is_whitespace);
  if (j == e) return j;
  return j - 1 > i ? j - 1 : j;
}

}  // namespace

char32_t ByteLevelPreTokenizer::byte_char(std::uint8_t b) {
  static const std::array<char32_t, 256> kChars = make_byte_chars();
  return kChars[b];
}

void ByteLevelPreTokenizer::pre_tokenize(Symbols& s, std::vector<Span>& words) const {
  Symbols& out = symbol_scratch();
  out.reserve(s.size() * 2 + 8);
  std::vector<Span>& spans = scratch();
  spans.reserve(words.size() * 2 + 8);
  thread_local Symbols piece;
  thread_local std::string bytes;
  for (auto [b, e] : words) {
    piece.assign(s.begin() + static_cast<std::ptrdiff_t>(b), s.begin() + static_cast<std::ptrdiff_t>(e));
    if (add_prefix_space_ && !piece.empty() && piece[0].c != ' ') {
      piece.insert(piece.begin(), Symbol{' ', piece[0].start, piece[0].end});
    }
    const std::size_t n = piece.size();
    std::size_t i = 0;
    while (i < n) {
      const std::size_t j = use_regex_ ? gpt2_match(piece, i, n) : n;
      const std::size_t first = out.size();
      for (std::size_t k = i; k < j; ++k) {
        const Symbol& sym = piece[k];
        if (sym.c < 0x80) {
          out.push_back({byte_char(static_cast<std::uint8_t>(sym.c)), sym.start, sym.end});
          continue;
        }
        bytes.clear();
        append_utf8(bytes, sym.c);
        for (char ch : bytes) out.push_back({byte_char(static_cast<std::uint8_t>(ch)), sym.start, sym.end});
      }
      spans.emplace_back(first, out.size());
      i = j;
    }
  }
  s.swap(out);
  words.swap(spans);
}

void MetaspacePreTokenizer::pre_tokenize(Symbols& s, std::vector<Span>& words) const {
  Symbols& out = symbol_scratch();
  out.reserve(s.size() + words.size() + 8);
  std::vector<Span>& spans = scratch();
  spans.reserve(words.size() * 2 + 8);
  for (auto [b, e] : words) {
    if (b >= e) continue;
    const std::size_t first = out.size();
    const char32_t c0 = s[b].c == ' ' ? replacement_ : s[b].c;
    if (c0 != replacement_ && (prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && s[b].start == 0))) {
      out.push_back({replacement_, s[b].start, s[b].end});
    }
    for (std::size_t i = b; i < e; ++i) out.push_back({s[i].c == ' ' ? replacement_ : s[i].c, s[i].start, s[i].end});
    if (!split_) {
      spans.emplace_back(first, out.size());
      continue;
    }
    // MergedWithNext on the replacement: a new word starts at each one.
    std::size_t w = first;
    for (std::size_t i = first + 1; i < out.size(); ++i) {
      if (out[i].c == replacement_) {
        spans.emplace_back(w, i);
        w = i;
      }
    }
    spans.emplace_back(w, out.size());
  }
  s.swap(out);
  words.swap(spans);
}

void SplitPreTokenizer::pre_tokenize(Symbols& s, std::vector<Span>& words) const {
  std::vector<Span>& out = scratch();
  out.reserve(words.size() * 2 + 8);
  thread_local std::u32string text;
  thread_local std::vector<std::pair<std::size_t, std::size_t>> matches;
  thread_local std::vector<Segment> segs;
  for (auto [b, e] : words) {
    text.clear();
    for (std::size_t i = b; i < e; ++i) text.push_back(s[i].c);
    matches.clear();
    if (regex_) {
      regex_->find_all(text, matches);
    } else {
      for (std::size_t at = text.find(literal_); at != std::u32string::npos;
           at = text.find(literal_, at + literal_.size())) {
        matches.emplace_back(at, at + literal_.size());
      }
    }
    segs.clear();
    std::size_t last = 0;
    for (auto [mb, me] : matches) {
      if (last != mb) segs.push_back({b + last, b + mb, invert_});
      segs.push_back({b + mb, b + me, !invert_});
      last = me;
    }
    if (last != text.size()) segs.push_back({b + last, e, invert_});
    apply_behavior(segs, behavior_, out);
  }
  words.swap(out);
}

void CharSplitPreTokenizer::pre_tokenize(Symbols& s, std::vector<Span>& words) const {
  std::vector<Span>& out = scratch();
  out.reserve(words.size() * 2 + 8);
  thread_local std::vector<Segment> segs;
  for (auto [b, e] : words) {
    switch (kind_) {
      case Kind::kPunctuation:
        char_segments(
            s, b, e, [](char32_t c) { return is_punctuation(c); }, segs);
        break;
      case Kind::kDigits:
        char_segments(
            s, b, e, [](char32_t c) { return (char_class(c) & kNumber) != 0; }, segs);
        break;
      case Kind::kDelimiter:
        char_segments(
            s, b, e, [d = delimiter_](char32_t c) { return c == d; }, segs);
        break;
    }
    apply_behavior(segs, behavior_, out);
  }
  words.swap(out);
}

void BertPreTokenizer::pre_tokenize(Symbols& s, std::vector<Span>& words) const {
  split(s, words, kWhitespace, kPunctuation);
}

void WhitespaceSplitPreTokenizer::pre_tokenize(Symbols& s, std::vector<Span>& words) const {
  split(s, words, kWhitespace, 0);
}

void WhitespacePreTokenizer::pre_tokenize(Symbols& s, std::vector<Span>& words) const {
  std::vector<Span>& out = scratch();
  out.reserve(words.size() * 2 + 8);
  for (auto [b, e] : words) {
    std::size_t i = b;
    while (i < e) {
      const std::uint16_t k = char_class(s[i].c);
      if ((k & kWhitespace) != 0) {
        ++i;
        continue;
      }
      const bool word = (k & kWordChar) != 0;
      std::size_t j = i + 1;
      while (j < e) {
        const std::uint16_t kj = char_class(s[j].c);
        if ((kj & kWhitespace) != 0 || ((kj & kWordChar) != 0) != word) break;
        ++j;
      }
      out.emplace_back(i, j);
      i = j;
    }
  }
  words.swap(out);
}

}  // namespace sluice::tok
