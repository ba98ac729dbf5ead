#include "pre_tokenizer.hpp"

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

}  // namespace

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
