#pragma once
// A small regular expression engine for the patterns of tokenizer.json ("Replace" normalizers and
// "Split" pre-tokenizers with {"Regex": ...}), matching code points the way Oniguruma (which
// Hugging Face tokenizers uses) does: leftmost match, alternatives tried in order, greedy or lazy
// quantifiers, with backtracking.
//
// Supported: literals and escapes (\t \n \r \f \v \e \0 \xHH \x{H...} \uHHHH, escaped
// punctuation), `.`, classes `[...]` with ranges, negation and the escapes below, \s \S \d \D
// \w \W \h \H, \p{..} / \P{..} with a general category (L, Lu, Ll, Lt, Lm, Lo, M, Mn, Mc, Me, N,
// Nd, Nl, No, P, Pc, Pd, Ps, Pe, Pi, Pf, Po, S, Sm, Sc, Sk, So, Z, Zs, Zl, Zp, C, Cc, Cf, Co, Cn,
// also as \pL), groups `(...)` and `(?:...)`, alternation, quantifiers * + ? {n} {n,} {n,m} and
// their lazy forms, anchors ^ $ \A \z \Z, lookahead (?=...) (?!...). Anything else (backreferences,
// lookbehind, flags such as (?i), scripts in \p{..}, possessive quantifiers) is refused when the
// pattern is compiled, with a message that names it.
//
// Matching is linear in (pattern size x text length): a failed (instruction, position) pair is
// remembered, so no pattern backtracks exponentially. Thread: any (const; scratch space is per
// thread).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::tok {

class Regex {
 public:
  /// Compiles `pattern` (UTF-8). Throws sluice::Error (invalid_model) naming the unsupported or
  /// malformed part.
  explicit Regex(std::string_view pattern);

  /// The non-overlapping matches in `text`, leftmost first, as [begin, end) indices of `text`.
  /// After an empty match the search goes on one character later.
  void find_all(const std::u32string& text, std::vector<std::pair<std::size_t, std::size_t>>& out) const;

 private:
  enum class Op : std::uint8_t { kChar, kSet, kAny, kSplit, kJump, kMatch, kBegin, kEnd, kEndNewline, kLook };
  struct Range {
    char32_t first, last;
  };
  struct Set {
    std::vector<Range> ranges;
    std::uint64_t categories = 0;  // bit per utf8proc category
    std::uint64_t not_categories = 0;
    bool negated = false;
    bool contains(char32_t c) const;
  };
  struct Inst {
    Op op;
    char32_t c = 0;       // kChar
    std::uint32_t x = 0;  // kSet: set index; kSplit/kJump: first target; kLook: end of the sub-program
    std::uint32_t y = 0;  // kSplit: second target
    bool negate = false;  // kLook: (?!...)
  };
  struct Node;

  bool run(std::uint32_t pc, std::size_t pos, const std::u32string& text, std::size_t& end) const;

  std::string pattern_;
  std::vector<Inst> prog_;
  std::vector<Set> sets_;
  std::vector<std::uint32_t> split_index_;  // pc -> index among the kSplit instructions
  std::uint32_t splits_ = 0;
  friend class RegexCompiler;
};

}  // namespace sluice::tok
