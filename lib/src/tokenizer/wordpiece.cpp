#include "wordpiece.hpp"

#include <fmt/format.h>

#include <algorithm>
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
  std::int32_t max_id = -1;
  for (const auto& [token, id] : vocab_) max_id = std::max(max_id, id);
  by_id_.resize(static_cast<std::size_t>(max_id + 1));
  for (const auto& [token, id] : vocab_) {
    by_id_[static_cast<std::size_t>(id)] = token;
    longest_ = std::max(longest_, token.size());
    if (prefix_.empty()) continue;
    if (token.size() > prefix_.size() && token.compare(0, prefix_.size(), prefix_) == 0) {
      continuations_.emplace(token.substr(prefix_.size()), id);
    }
  }
  if (prefix_.empty()) continuations_ = vocab_;
}

std::optional<std::int32_t> WordPiece::token_to_id(std::string_view token) const {
  if (auto it = vocab_.find(token); it != vocab_.end()) return it->second;
  return std::nullopt;
}

std::optional<std::string_view> WordPiece::id_to_token(std::int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= by_id_.size() || by_id_[static_cast<std::size_t>(id)].data() == nullptr)
    return std::nullopt;
  return by_id_[static_cast<std::size_t>(id)];
}

void WordPiece::tokenize(const Symbols& s, Span span, std::vector<Token>& out) const {
  const auto [b, e] = span;
  const std::size_t n = e - b;
  if (n == 0) return;
  if (n > max_chars_) {
    out.push_back({unk_id_, s[b].start, s[e - 1].end});
    return;
  }
  // The word as UTF-8, with the byte position of each symbol. Scratch space is per thread.
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
    // No token is longer than longest_ bytes: start from the longest end that could match.
    std::size_t end = n;
    while (end > start + 1 && pos[end] - pos[start] > longest_) --end;
    std::int32_t found = -1;
    for (; end > start; --end) {
      const std::string_view piece(word.data() + pos[start], pos[end] - pos[start]);
      if (auto it = table.find(piece); it != table.end()) {
        found = it->second;
        break;
      }
    }
    if (found < 0) {  // one piece is not in the vocabulary: the whole word is unknown
      out.resize(first);
      out.push_back({unk_id_, s[b].start, s[e - 1].end});
      return;
    }
    out.push_back({found, s[b + start].start, s[b + end - 1].end});
    start = end;
  }
}

}  // namespace sluice::tok
