#include "pre_tokenizer.hpp"

namespace sluice::tok {

namespace {

bool is_bert_punctuation(char32_t c) { return is_ascii_punctuation(c) || (c >= 0x80 && is_punctuation(c)); }

template <typename Pred>
void split_removed_and_isolated(const Symbols& s, std::vector<Span>& words, bool isolate_punct, Pred) {
  std::vector<Span> out;
  out.reserve(words.size() * 2 + 4);
  for (auto [b, e] : words) {
    std::size_t start = b;
    for (std::size_t i = b; i < e; ++i) {
      const char32_t c = s[i].c;
      if (is_whitespace(c)) {
        if (i > start) out.emplace_back(start, i);
        start = i + 1;
      } else if (isolate_punct && is_bert_punctuation(c)) {
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

void BertPreTokenizer::split(const Symbols& s, std::vector<Span>& words) const {
  split_removed_and_isolated(s, words, true, 0);
}

void WhitespaceSplitPreTokenizer::split(const Symbols& s, std::vector<Span>& words) const {
  split_removed_and_isolated(s, words, false, 0);
}

}  // namespace sluice::tok
