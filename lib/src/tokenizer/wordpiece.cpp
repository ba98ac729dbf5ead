#include "wordpiece.hpp"

#include <fmt/format.h>

#include <sluice/error.hpp>

namespace sluice::tok {

WordPiece::WordPiece(Vocab vocab, std::string unk_token, std::string continuing_subword_prefix,
                     std::size_t max_input_chars_per_word)
    : vocab_(std::move(vocab)),
      unk_token_(std::move(unk_token)),
      prefix_(std::move(continuing_subword_prefix)),
      max_chars_(max_input_chars_per_word) {
  auto it = vocab_.find(unk_token_);
  if (it == vocab_.end()) {
    throw Error(ErrorCode::invalid_model,
                fmt::format("tokenizer.json: WordPiece unk_token \"{}\" is not in the vocabulary", unk_token_));
  }
  unk_id_ = it->second;
  for (const auto& [token, id] : vocab_) {
    if (!prefix_.empty() && token.size() > prefix_.size() && token.compare(0, prefix_.size(), prefix_) == 0) {
      continuations_.emplace(token.substr(prefix_.size()), id);
    }
  }
  if (prefix_.empty()) continuations_ = vocab_;
}

void WordPiece::tokenize(const Symbols& s, Span span, std::vector<Token>& out) const {
  const auto [b, e] = span;
  const std::size_t n = e - b;
  if (n == 0) return;
  if (n > max_chars_) {
    out.push_back({unk_id_, s[b].start, s[e - 1].end});
    return;
  }
  // The word as UTF-8, with the byte position of each symbol.
  thread_local std::string word;
  thread_local std::vector<std::uint32_t> pos;
  word.clear();
  pos.clear();
  for (std::size_t i = b; i < e; ++i) {
    pos.push_back(static_cast<std::uint32_t>(word.size()));
    append_utf8(word, s[i].c);
  }
  pos.push_back(static_cast<std::uint32_t>(word.size()));

  const std::size_t first = out.size();
  std::size_t start = 0;
  while (start < n) {
    const Vocab& table = start == 0 ? vocab_ : continuations_;
    std::size_t end = n;
    std::int32_t found = -1;
    while (end > start) {
      std::string_view piece(word.data() + pos[start], pos[end] - pos[start]);
      if (auto it = table.find(piece); it != table.end()) {
        found = it->second;
        break;
      }
      --end;
    }
    if (found < 0) {
      out.resize(first);
      out.push_back({unk_id_, s[b].start, s[e - 1].end});
      return;
    }
    out.push_back({found, s[b + start].start, s[b + end - 1].end});
    start = end;
  }
}

}  // namespace sluice::tok
