#include "bpe.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <sluice/error.hpp>

namespace sluice::tok {

namespace {

// The per-thread word cache (word as UTF-8 -> its pieces) belongs to one model at a time; it is
// cleared when another model uses the thread, or when it grows past kCacheLimit words.
constexpr std::size_t kCacheLimit = 20000;
constexpr std::size_t kCacheMaxWord = 256;  // bytes; longer words are not cached

std::atomic<std::uintptr_t> next_model_key{1};

}  // namespace

Bpe::Bpe(Vocab vocab, const std::vector<std::pair<std::string, std::string>>& merges, Options options)
    : vocab_(std::move(vocab)), options_(std::move(options)), cache_key_(next_model_key++) {
  std::int32_t max_id = -1;
  for (const auto& [token, id] : vocab_) max_id = std::max(max_id, id);
  by_id_.resize(static_cast<std::size_t>(max_id + 1));
  for (const auto& [token, id] : vocab_) by_id_[static_cast<std::size_t>(id)] = token;
  if (options_.unk_token) {
    if (auto it = vocab_.find(*options_.unk_token); it != vocab_.end()) unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(fmt::format("<0x{:02X}>", b));
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }
  const std::size_t prefix_len = options_.continuing_subword_prefix.size();
  merges_.reserve(merges.size());
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto find = [&](const std::string& token) {
      auto it = vocab_.find(token);
      if (it == vocab_.end()) {
        throw Error(ErrorCode::invalid_model,
                    fmt::format("tokenizer.json: BPE merge {} (\"{} {}\") uses \"{}\", which is not in the vocabulary",
                                rank, a, b, token));
      }
      return it->second;
    };
    const std::int32_t a_id = find(a);
    const std::int32_t b_id = find(b);
    const std::string merged = a + (b.size() >= prefix_len ? b.substr(prefix_len) : std::string());
    const std::int32_t new_id = find(merged);
    // A pair listed twice keeps its last rank, as Hugging Face's map does.
    merges_[pair_key(a_id, b_id)] = {static_cast<std::uint32_t>(rank), new_id};
  }
}

std::optional<std::int32_t> Bpe::token_to_id(std::string_view token) const {
  if (auto it = vocab_.find(token); it != vocab_.end()) return it->second;
  return std::nullopt;
}

std::optional<std::string_view> Bpe::id_to_token(std::int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= by_id_.size() || by_id_[static_cast<std::size_t>(id)].data() == nullptr)
    return std::nullopt;
  return by_id_[static_cast<std::size_t>(id)];
}

// Hugging Face's BPE::merge_word before the merges: one piece per character (prefix on all but
// the first, suffix on the last), byte tokens or the unknown token for the missing ones.
void Bpe::initial_pieces(const Symbols& s, std::size_t b, std::size_t e, std::vector<Piece>& pieces) const {
  thread_local std::string piece;
  pieces.clear();
  bool have_unk = false;
  Piece unk{};
  const bool affixes = !options_.continuing_subword_prefix.empty() || !options_.end_of_word_suffix.empty();
  for (std::size_t i = b; i < e; ++i) {
    const auto at = static_cast<std::uint32_t>(i - b);
    piece.clear();
    if (affixes && i > b) piece += options_.continuing_subword_prefix;
    append_utf8(piece, s[i].c);
    if (affixes && i + 1 == e) piece += options_.end_of_word_suffix;
    if (auto it = vocab_.find(piece); it != vocab_.end()) {
      if (have_unk) {
        pieces.push_back(unk);
        have_unk = false;
      }
      pieces.push_back({it->second, at, at + 1});
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (char ch : piece) all = all && byte_ids_[static_cast<unsigned char>(ch)] >= 0;
      if (all) {
        for (char ch : piece) pieces.push_back({byte_ids_[static_cast<unsigned char>(ch)], at, at + 1});
        continue;
      }
    }
    if (unk_id_ < 0) continue;  // no unknown token: the character is dropped
    if (have_unk && options_.fuse_unk) {
      unk.end = at + 1;
    } else {
      if (have_unk) pieces.push_back(unk);
      unk = {unk_id_, at, at + 1};
      have_unk = true;
    }
  }
  if (have_unk) pieces.push_back(unk);
}

// Word::merge_all without dropout: repeatedly merges the pair of adjacent pieces with the lowest
// rank (the leftmost among equals), with a heap of candidate merges as Hugging Face keeps one.
void Bpe::merge_all(std::vector<Piece>& pieces) const {
  const std::size_t n = pieces.size();
  if (n < 2) return;
  struct Candidate {
    std::uint32_t rank;
    std::uint32_t pos;
    std::int32_t new_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  // A min-heap (lowest rank, then leftmost) over a per-thread vector: no allocation once warm.
  thread_local std::vector<Candidate> heap;
  thread_local std::vector<std::int32_t> prev, next;
  thread_local std::vector<bool> alive;
  heap.clear();
  const auto later = [](const Candidate& a, const Candidate& b) { return a > b; };
  prev.resize(n);
  next.resize(n);
  alive.assign(n, true);
  for (std::size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<std::int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<std::int32_t>(i + 1) : -1;
  }
  auto candidate = [&](std::size_t left) {
    const std::int32_t right = next[left];
    if (right < 0) return;
    auto it = merges_.find(pair_key(pieces[left].id, pieces[static_cast<std::size_t>(right)].id));
    if (it != merges_.end()) {
      heap.push_back({it->second.rank, static_cast<std::uint32_t>(left), it->second.new_id});
      std::push_heap(heap.begin(), heap.end(), later);
    }
  };
  for (std::size_t i = 0; i + 1 < n; ++i) candidate(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate top = heap.back();
    heap.pop_back();
    if (!alive[top.pos]) continue;
    const std::int32_t right = next[top.pos];
    if (right < 0) continue;
    auto it = merges_.find(pair_key(pieces[top.pos].id, pieces[static_cast<std::size_t>(right)].id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // an outdated candidate
    Piece& left = pieces[top.pos];
    left.id = top.new_id;
    left.end = pieces[static_cast<std::size_t>(right)].end;
    alive[static_cast<std::size_t>(right)] = false;
    next[top.pos] = next[static_cast<std::size_t>(right)];
    if (next[top.pos] >= 0) prev[static_cast<std::size_t>(next[top.pos])] = static_cast<std::int32_t>(top.pos);
    if (prev[top.pos] >= 0) candidate(static_cast<std::size_t>(prev[top.pos]));
    candidate(top.pos);
  }
  std::size_t w = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (alive[i]) pieces[w++] = pieces[i];
  }
  pieces.resize(w);
}

void Bpe::tokenize(const Symbols& s, Span span, std::vector<Token>& out) const {
  const auto [b, e] = span;
  if (b >= e) return;
  thread_local std::string word;
  word.clear();
  for (std::size_t i = b; i < e; ++i) append_utf8(word, s[i].c);
  if (options_.ignore_merges) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      out.push_back({it->second, s[b].start, s[e - 1].end});
      return;
    }
  }
  // The per-thread cache, keyed by model and word.
  thread_local std::unordered_map<std::string, std::vector<Piece>, StringHash, std::equal_to<>> cache;
  thread_local std::uintptr_t cache_owner = 0;
  if (cache_owner != cache_key_) {
    cache.clear();
    cache_owner = cache_key_;
  }
  const std::vector<Piece>* pieces = nullptr;
  thread_local std::vector<Piece> fresh;
  if (auto it = cache.find(std::string_view(word)); it != cache.end()) {
    pieces = &it->second;
  } else {
    initial_pieces(s, b, e, fresh);
    merge_all(fresh);
    if (word.size() <= kCacheMaxWord) {
      if (cache.size() >= kCacheLimit) cache.clear();
      pieces = &cache.emplace(word, fresh).first->second;
    } else {
      pieces = &fresh;
    }
  }
  for (const Piece& p : *pieces) out.push_back({p.id, s[b + p.begin].start, s[b + p.end - 1].end});
}

}  // namespace sluice::tok
