#include "unigram.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <map>
#include <sluice/error.hpp>

namespace sluice::tok {

namespace {
constexpr double kUnkPenalty = 10.0;
}

Unigram::Unigram(std::vector<std::pair<std::string, double>> vocab, std::optional<std::int32_t> unk_id,
                 bool byte_fallback, Lattice lattice)
    : pieces_(std::move(vocab)), unk_id_(unk_id), byte_fallback_(byte_fallback), lattice_(lattice) {
  if (unk_id_ && (*unk_id_ < 0 || static_cast<std::size_t>(*unk_id_) >= pieces_.size())) {
    throw Error(ErrorCode::invalid_model,
                fmt::format("tokenizer.json: Unigram unk_id {} is outside the vocabulary of {} pieces", *unk_id_,
                            pieces_.size()));
  }
  double min_score = std::numeric_limits<double>::infinity();
  vocab_.reserve(pieces_.size());
  for (std::size_t i = 0; i < pieces_.size(); ++i) {
    vocab_[pieces_[i].first] = static_cast<std::int32_t>(i);  // a repeated piece: the last id wins
    min_score = std::min(min_score, pieces_[i].second);
  }
  unk_score_ = lattice_ == Lattice::tfjs ? 0.0 : min_score - kUnkPenalty;
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(fmt::format("<0x{:02X}>", b));
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }
  // The trie, built breadth-first from the sorted pieces so that each node's edges are contiguous.
  std::vector<std::pair<std::string_view, std::int32_t>> sorted;
  sorted.reserve(vocab_.size());
  for (const auto& [piece, id] : vocab_) {
    if (!piece.empty()) sorted.emplace_back(piece, id);
  }
  std::sort(sorted.begin(), sorted.end());
  // Node = range [lo, hi) of `sorted` sharing a prefix of length `depth`.
  struct Pending {
    std::size_t lo, hi, depth;
  };
  std::vector<Pending> queue{{0, sorted.size(), 0}};
  id_.push_back(-1);
  for (std::size_t q = 0; q < queue.size(); ++q) {
    const Pending node = queue[q];
    first_.push_back(static_cast<std::uint32_t>(edges_.size()));
    std::size_t i = node.lo;
    if (i < node.hi && sorted[i].first.size() == node.depth) ++i;  // the piece that ends here
    while (i < node.hi) {
      const auto byte = static_cast<std::uint8_t>(sorted[i].first[node.depth]);
      std::size_t j = i;
      while (j < node.hi && static_cast<std::uint8_t>(sorted[j].first[node.depth]) == byte) ++j;
      const auto child = static_cast<std::uint32_t>(queue.size());
      edges_.push_back({byte, child});
      id_.push_back(sorted[i].first.size() == node.depth + 1 ? sorted[i].second : -1);
      queue.push_back({i, j, node.depth + 1});
      i = j;
    }
  }
  first_.push_back(static_cast<std::uint32_t>(edges_.size()));
}

std::optional<std::int32_t> Unigram::token_to_id(std::string_view token) const {
  if (auto it = vocab_.find(token); it != vocab_.end()) return it->second;
  return std::nullopt;
}

std::optional<std::string_view> Unigram::id_to_token(std::int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= pieces_.size()) return std::nullopt;
  return pieces_[static_cast<std::size_t>(id)].first;
}

void Unigram::tokenize(const Symbols& s, Span span, std::vector<Token>& out) const {
  const auto [b, e] = span;
  if (b >= e) return;
  thread_local std::string text;
  thread_local std::vector<std::uint32_t> symbol_at;  // byte -> symbol index within the word
  text.clear();
  symbol_at.clear();
  for (std::size_t i = b; i < e; ++i) {
    const std::size_t before = text.size();
    append_utf8(text, s[i].c);
    symbol_at.insert(symbol_at.end(), text.size() - before, static_cast<std::uint32_t>(i - b));
  }
  const std::size_t size = text.size();
  // Whether `candidate` replaces `target`: Hugging Face keeps the first of equal scores; the
  // TensorFlow.js code keeps the last, and replaces a score of exactly 0 whatever comes.
  const bool tfjs = lattice_ == Lattice::tfjs;
  struct Best {
    double score;
    std::int64_t starts_at;  // -1: no path yet
    std::int32_t id;
  };
  thread_local std::vector<Best> best;
  best.assign(size + 1, {0.0, -1, 0});
  std::size_t start = 0;
  while (start < size) {
    const double here = best[start].score;
    // Length in bytes of the character at `start`.
    std::size_t char_len = 1;
    while (start + char_len < size && symbol_at[start + char_len] == symbol_at[start]) ++char_len;
    bool has_single = false;
    std::uint32_t node = 0;
    for (std::size_t k = start; k < size; ++k) {
      const auto byte = static_cast<std::uint8_t>(text[k]);
      std::uint32_t child = 0;
      bool found = false;
      for (std::uint32_t x = first_[node]; x < first_[node + 1]; ++x) {
        if (edges_[x].byte == byte) {
          child = edges_[x].node;
          found = true;
          break;
        }
        if (edges_[x].byte > byte) break;
      }
      if (!found) break;
      node = child;
      if (id_[node] < 0) continue;
      const std::size_t end = k + 1;
      const double candidate = pieces_[static_cast<std::size_t>(id_[node])].second + here;
      Best& target = best[end];
      if (target.starts_at < 0 || candidate > target.score ||
          (tfjs && (candidate == target.score || target.score == 0.0))) {
        target = {candidate, static_cast<std::int64_t>(start), id_[node]};
      }
      if (end - start == char_len) has_single = true;
    }
    if (!has_single) {
      Best& target = best[start + char_len];
      const double candidate = unk_score_ + here;
      if (target.starts_at < 0 || candidate > target.score ||
          (tfjs && (candidate == target.score || target.score == 0.0))) {
        target = {candidate, static_cast<std::int64_t>(start), unk_id_.value_or(-1)};
      }
    }
    start += char_len;
  }
  // Back from the end; adjacent unknowns are one token.
  thread_local std::vector<std::pair<std::size_t, std::size_t>> ranges;  // byte ranges, reversed
  thread_local std::vector<bool> unknown;
  ranges.clear();
  unknown.clear();
  std::size_t end = size;
  while (end > 0) {
    const Best& node = best[end];
    const auto from = static_cast<std::size_t>(node.starts_at);
    const bool unk = unk_id_ && node.id == *unk_id_;
    if (unk && !unknown.empty() && unknown.back()) {
      ranges.back().first = from;
    } else {
      ranges.emplace_back(from, end);
      unknown.push_back(unk);
    }
    end = from;
  }
  for (std::size_t r = ranges.size(); r-- > 0;) {
    const auto [rb, re] = ranges[r];
    const std::uint32_t start_byte = s[b + symbol_at[rb]].start;
    const std::uint32_t end_byte = s[b + symbol_at[re - 1]].end;
    const std::string_view piece(text.data() + rb, re - rb);
    if (auto it = vocab_.find(piece); it != vocab_.end()) {
      out.push_back({it->second, start_byte, end_byte});
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char ch : piece) all = all && byte_ids_[static_cast<unsigned char>(ch)] >= 0;
      if (all) {
        for (char ch : piece) out.push_back({byte_ids_[static_cast<unsigned char>(ch)], start_byte, end_byte});
        continue;
      }
    }
    if (unk_id_) out.push_back({*unk_id_, start_byte, end_byte});
  }
}

}  // namespace sluice::tok
