// Fuzz target: Tokenizer::encode on bert-base-uncased's tokenizer.json.
//
// Input layout: the text, then 2 configuration bytes (absent when the input is shorter):
//   [0] the truncation length tried, 1 + byte (1..256)   [1] unused
// Bytes that are not well-formed UTF-8 are replaced by U+FFFD before encoding (encode()'s
// contract is valid UTF-8); the raw bytes are then encoded too, checking only that nothing
// breaks and that ids and offsets stay in range (encode() documents reading them as U+FFFD).
//
// Invariants checked, for the text:
// - ids, type_ids and offsets have one entry per token; every id is below vocab_size() and has
//   a token (id_to_token); type ids are 0 (one sequence).
// - With special tokens: [CLS] first and [SEP] last, with offsets {0, 0}.
// - Every other token's offsets satisfy start < end <= text size, start on a UTF-8 character
//   boundary and end on one, starts non-decreasing.
// - Without special tokens: the same tokens as between [CLS] and [SEP].
// - Truncation to L (set_max_length on a second instance): the first L - 2 tokens of the
//   untruncated encoding between [CLS] and [SEP], untruncated_length the same, truncated()
//   exactly when the full encoding is longer than L; without special tokens the first L.
// - Encoding twice gives the same result (per-thread scratch buffers are reused).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <sluice/error.hpp>
#include <sluice/tokenizer.hpp>

#include "fuzz_check.hpp"
#include "json_check.hpp"

using sluice::Encoding;
using sluice::Tokenizer;
using namespace sluice::fuzz;

namespace {

struct State {
  std::unique_ptr<Tokenizer> full;        // the file's settings (no truncation)
  std::unique_ptr<Tokenizer> truncating;  // set_max_length() before each use
  std::int32_t cls = -1, sep = -1;
};

State& state() {
  static State s = [] {
    State st;
    const char* path = std::getenv("SLUICE_FUZZ_TOKENIZER_JSON");
    if (path == nullptr) path = SLUICE_FUZZ_TOKENIZER_JSON;
    try {
      st.full = Tokenizer::from_file(path);
      st.truncating = Tokenizer::from_file(path);
    } catch (const sluice::Error& e) {
      std::fprintf(stderr, "fuzz_tokenizer: %s\n", e.what());
      std::abort();
    }
    FUZZ_CHECK(!st.full->max_length(), "%s sets a truncation; this target expects none", path);
    st.cls = st.full->token_to_id("[CLS]").value_or(-1);
    st.sep = st.full->token_to_id("[SEP]").value_or(-1);
    FUZZ_CHECK(st.cls >= 0 && st.sep >= 0, "no [CLS]/[SEP] in %s", path);
    return st;
  }();
  return s;
}

// Well-formed UTF-8 from arbitrary bytes: each byte that does not start a well-formed sequence
// becomes U+FFFD.
std::string to_valid_utf8(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  std::size_t i = 0;
  while (i < in.size()) {
    const std::size_t bad = utf8_error_at(in.substr(i));
    out.append(in.substr(i, bad));
    i += bad;
    if (i < in.size()) {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

bool is_boundary(std::string_view text, std::uint32_t at) {
  return at == text.size() || (at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) != 0x80);
}

// Structure and ranges, true of any encoding. `specials`: [CLS] ... [SEP] expected.
void check_shape(const Encoding& e, std::string_view text, bool specials, bool check_boundaries) {
  const State& st = state();
  const std::size_t vocab = st.full->vocab_size();
  FUZZ_CHECK(e.ids.size() == e.offsets.size() && e.ids.size() == e.type_ids.size(),
             "%zu ids, %zu offsets, %zu type ids", e.ids.size(), e.offsets.size(), e.type_ids.size());
  FUZZ_CHECK(e.untruncated_length >= e.ids.size(), "untruncated_length %zu < %zu ids", e.untruncated_length,
             e.ids.size());
  for (std::size_t i = 0; i < e.ids.size(); ++i) {
    FUZZ_CHECK(e.ids[i] >= 0 && static_cast<std::size_t>(e.ids[i]) < vocab, "id %d at %zu outside [0, %zu)", e.ids[i],
               i, vocab);
    FUZZ_CHECK(st.full->id_to_token(e.ids[i]).has_value(), "id %d has no token", e.ids[i]);
    FUZZ_CHECK(e.type_ids[i] == 0, "type id %d at %zu", e.type_ids[i], i);
  }
  std::size_t first = 0, last = e.ids.size();
  if (specials) {
    FUZZ_CHECK(e.ids.size() >= 2 && e.ids.front() == st.cls && e.ids.back() == st.sep,
               "special tokens missing (%zu ids)", e.ids.size());
    FUZZ_CHECK(e.offsets.front() == std::make_pair(0u, 0u) && e.offsets.back() == std::make_pair(0u, 0u),
               "special token offsets not {0, 0}");
    first = 1;
    last = e.ids.size() - 1;
  }
  std::uint32_t prev_start = 0;
  for (std::size_t i = first; i < last; ++i) {
    const auto [s, end] = e.offsets[i];
    FUZZ_CHECK(s < end && end <= text.size(), "token %zu (id %d) has offsets [%u, %u), text size %zu: \"%s\"", i,
               e.ids[i], s, end, text.size(), printable(text).c_str());
    FUZZ_CHECK(s >= prev_start, "token %zu starts at %u, before the previous one at %u: \"%s\"", i, s, prev_start,
               printable(text).c_str());
    if (check_boundaries) {
      FUZZ_CHECK(is_boundary(text, s) && is_boundary(text, end),
                 "token %zu offsets [%u, %u) split a UTF-8 character: \"%s\"", i, s, end, printable(text).c_str());
    }
    prev_start = s;
  }
}

bool same(const Encoding& a, const Encoding& b) {
  return a.ids == b.ids && a.type_ids == b.type_ids && a.offsets == b.offsets &&
         a.untruncated_length == b.untruncated_length;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  State& st = state();
  std::uint8_t cfg[2] = {};
  std::string_view raw(reinterpret_cast<const char*>(data), size);
  if (size >= sizeof cfg) {
    cfg[0] = data[size - 2];
    cfg[1] = data[size - 1];
    raw.remove_suffix(sizeof cfg);
  }
  const std::size_t max_len = 1 + static_cast<std::size_t>(cfg[0]);
  const std::string text = to_valid_utf8(raw);

  const Encoding full = st.full->encode(text, true);
  check_shape(full, text, true, true);
  FUZZ_CHECK(full.untruncated_length == full.ids.size() && !full.truncated(), "truncated without a max length");
  FUZZ_CHECK(same(full, st.full->encode(text, true)), "a second encode differs: \"%s\"", printable(text).c_str());

  const Encoding bare = st.full->encode(text, false);
  check_shape(bare, text, false, true);
  FUZZ_CHECK(
      bare.ids.size() + 2 == full.ids.size() && std::equal(bare.ids.begin(), bare.ids.end(), full.ids.begin() + 1) &&
          std::equal(bare.offsets.begin(), bare.offsets.end(), full.offsets.begin() + 1),
      "without special tokens: %zu tokens, not the %zu between [CLS] and [SEP]", bare.ids.size(), full.ids.size() - 2);

  st.truncating->set_max_length(max_len);
  const Encoding cut = st.truncating->encode(text, true);
  check_shape(cut, text, true, true);
  const std::size_t keep = max_len > 2 ? max_len - 2 : 0;
  const std::size_t kept = std::min(keep, bare.ids.size());
  FUZZ_CHECK(cut.ids.size() == kept + 2 && std::equal(cut.ids.begin() + 1, cut.ids.end() - 1, full.ids.begin() + 1) &&
                 std::equal(cut.offsets.begin() + 1, cut.offsets.end() - 1, full.offsets.begin() + 1),
             "truncated to %zu: %zu tokens, expected the first %zu of %zu between [CLS] and [SEP]", max_len,
             cut.ids.size(), kept, bare.ids.size());
  FUZZ_CHECK(cut.untruncated_length == full.ids.size(), "truncated: untruncated_length %zu, full encoding %zu",
             cut.untruncated_length, full.ids.size());
  FUZZ_CHECK(cut.truncated() == (full.ids.size() > std::max<std::size_t>(max_len, 2)),
             "truncated() %d with max length %zu and %zu tokens", cut.truncated(), max_len, full.ids.size());
  const Encoding cut_bare = st.truncating->encode(text, false);
  check_shape(cut_bare, text, false, true);
  const std::size_t kept_bare = std::min(max_len, bare.ids.size());
  FUZZ_CHECK(cut_bare.ids.size() == kept_bare && std::equal(cut_bare.ids.begin(), cut_bare.ids.end(), bare.ids.begin()),
             "truncated to %zu without special tokens: %zu tokens, expected %zu", max_len, cut_bare.ids.size(),
             kept_bare);
  FUZZ_CHECK(cut_bare.untruncated_length == bare.ids.size(), "untruncated_length %zu, expected %zu",
             cut_bare.untruncated_length, bare.ids.size());

  // The raw bytes, when they were not valid UTF-8: in range, nothing more is promised.
  if (text.size() != raw.size() || text != raw) {
    const Encoding r = st.full->encode(raw, true);
    check_shape(r, raw, true, false);
  }
  return 0;
}
