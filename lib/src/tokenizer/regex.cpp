#include "regex.hpp"

#include <fmt/format.h>
#include <utf8proc.h>

#include <memory>
#include <sluice/error.hpp>

#include "unicode.hpp"

namespace sluice::tok {

namespace {

constexpr std::size_t kMaxProgram = 20000;

std::uint64_t category_bit(int cat) { return std::uint64_t{1} << cat; }

// General category names to utf8proc category bits.
bool category_mask(std::string_view name, std::uint64_t& mask) {
  struct Cat {
    std::string_view name;
    std::initializer_list<int> cats;
  };
  using C = utf8proc_category_t;
  static const Cat kCats[] = {
      {"L",
       {C::UTF8PROC_CATEGORY_LU, C::UTF8PROC_CATEGORY_LL, C::UTF8PROC_CATEGORY_LT, C::UTF8PROC_CATEGORY_LM,
        C::UTF8PROC_CATEGORY_LO}},
      {"Lu", {C::UTF8PROC_CATEGORY_LU}},
      {"Ll", {C::UTF8PROC_CATEGORY_LL}},
      {"Lt", {C::UTF8PROC_CATEGORY_LT}},
      {"Lm", {C::UTF8PROC_CATEGORY_LM}},
      {"Lo", {C::UTF8PROC_CATEGORY_LO}},
      {"M", {C::UTF8PROC_CATEGORY_MN, C::UTF8PROC_CATEGORY_MC, C::UTF8PROC_CATEGORY_ME}},
      {"Mn", {C::UTF8PROC_CATEGORY_MN}},
      {"Mc", {C::UTF8PROC_CATEGORY_MC}},
      {"Me", {C::UTF8PROC_CATEGORY_ME}},
      {"N", {C::UTF8PROC_CATEGORY_ND, C::UTF8PROC_CATEGORY_NL, C::UTF8PROC_CATEGORY_NO}},
      {"Nd", {C::UTF8PROC_CATEGORY_ND}},
      {"Nl", {C::UTF8PROC_CATEGORY_NL}},
      {"No", {C::UTF8PROC_CATEGORY_NO}},
      {"P",
       {C::UTF8PROC_CATEGORY_PC, C::UTF8PROC_CATEGORY_PD, C::UTF8PROC_CATEGORY_PS, C::UTF8PROC_CATEGORY_PE,
        C::UTF8PROC_CATEGORY_PI, C::UTF8PROC_CATEGORY_PF, C::UTF8PROC_CATEGORY_PO}},
      {"Pc", {C::UTF8PROC_CATEGORY_PC}},
      {"Pd", {C::UTF8PROC_CATEGORY_PD}},
      {"Ps", {C::UTF8PROC_CATEGORY_PS}},
      {"Pe", {C::UTF8PROC_CATEGORY_PE}},
      {"Pi", {C::UTF8PROC_CATEGORY_PI}},
      {"Pf", {C::UTF8PROC_CATEGORY_PF}},
      {"Po", {C::UTF8PROC_CATEGORY_PO}},
      {"S", {C::UTF8PROC_CATEGORY_SM, C::UTF8PROC_CATEGORY_SC, C::UTF8PROC_CATEGORY_SK, C::UTF8PROC_CATEGORY_SO}},
      {"Sm", {C::UTF8PROC_CATEGORY_SM}},
      {"Sc", {C::UTF8PROC_CATEGORY_SC}},
      {"Sk", {C::UTF8PROC_CATEGORY_SK}},
      {"So", {C::UTF8PROC_CATEGORY_SO}},
      {"Z", {C::UTF8PROC_CATEGORY_ZS, C::UTF8PROC_CATEGORY_ZL, C::UTF8PROC_CATEGORY_ZP}},
      {"Zs", {C::UTF8PROC_CATEGORY_ZS}},
      {"Zl", {C::UTF8PROC_CATEGORY_ZL}},
      {"Zp", {C::UTF8PROC_CATEGORY_ZP}},
      {"C",
       {C::UTF8PROC_CATEGORY_CC, C::UTF8PROC_CATEGORY_CF, C::UTF8PROC_CATEGORY_CO, C::UTF8PROC_CATEGORY_CS,
        C::UTF8PROC_CATEGORY_CN}},
      {"Cc", {C::UTF8PROC_CATEGORY_CC}},
      {"Cf", {C::UTF8PROC_CATEGORY_CF}},
      {"Co", {C::UTF8PROC_CATEGORY_CO}},
      {"Cn", {C::UTF8PROC_CATEGORY_CN}},
  };
  for (const Cat& c : kCats) {
    if (c.name == name) {
      mask = 0;
      for (int k : c.cats) mask |= category_bit(k);
      return true;
    }
  }
  return false;
}

}  // namespace

bool Regex::Set::contains(char32_t c) const {
  bool in = false;
  for (const Range& r : ranges) {
    if (c >= r.first && c <= r.last) {
      in = true;
      break;
    }
  }
  if (!in && (categories | not_categories) != 0) {
    // \p{L} and \p{N} as Oniguruma (Unicode 16) has them: utf8proc's category, corrected by the
    // letter/number classes of unicode.cpp where their Unicode versions differ.
    int cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
    const std::uint16_t k = char_class(c);
    const bool letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
    const bool number = cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO;
    // A letter newer than utf8proc's tables counts as Lu when it has a lowercase mapping, else Lo.
    if (((k & kLetter) != 0) != letter) {
      cat = letter ? UTF8PROC_CATEGORY_CN : (k & kLowercaseChanges) != 0 ? UTF8PROC_CATEGORY_LU : UTF8PROC_CATEGORY_LO;
    }
    if (((k & kNumber) != 0) != number) cat = number ? UTF8PROC_CATEGORY_CN : UTF8PROC_CATEGORY_NO;
    const auto bit = category_bit(cat);
    in = (categories & bit) != 0 || (not_categories != 0 && (not_categories & bit) == 0);
  }
  return in != negated;
}

// The parser: pattern text to an AST, then the AST to instructions.
struct Regex::Node {
  enum Kind { kChar, kSet, kAny, kConcat, kAlt, kRepeat, kBegin, kEnd, kEndNewline, kBeginText, kEndText, kLook };
  Kind kind;
  char32_t c = 0;
  std::uint32_t set = 0;
  int min = 0, max = -1;  // kRepeat; max -1: unbounded
  bool greedy = true;
  bool negate = false;  // kLook
  std::vector<std::unique_ptr<Node>> kids;
};

class RegexCompiler {
 public:
  RegexCompiler(Regex& re, std::string_view pattern) : re_(re), pattern_(pattern) {
    Symbols s;
    decode_utf8(pattern, 0, s);
    for (const Symbol& sym : s) p_.push_back(sym.c);
  }

  void compile() {
    auto root = alternation();
    if (i_ != p_.size()) fail(") without a matching (");
    emit(*root);
    re_.prog_.push_back({Regex::Op::kMatch});
  }

 private:
  using Node = Regex::Node;
  using NodePtr = std::unique_ptr<Node>;

  [[noreturn]] void fail(std::string_view what) const {
    throw Error(ErrorCode::invalid_model,
                fmt::format("tokenizer.json: regex \"{}\": {} (sluice supports a subset of regular expressions; "
                            "see docs/tokenizers.md)",
                            pattern_, what));
  }
  bool more() const { return i_ < p_.size(); }
  char32_t peek() const { return p_[i_]; }
  bool eat(char32_t c) {
    if (more() && p_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  static NodePtr node(Node::Kind k) {
    auto n = std::make_unique<Node>();
    n->kind = k;
    return n;
  }

  NodePtr alternation() {
    auto first = concat();
    if (!more() || peek() != '|') return first;
    auto alt = node(Node::kAlt);
    alt->kids.push_back(std::move(first));
    while (eat('|')) alt->kids.push_back(concat());
    return alt;
  }

  NodePtr concat() {
    auto seq = node(Node::kConcat);
    while (more() && peek() != '|' && peek() != ')') {
      auto atom = this->atom();
      seq->kids.push_back(quantified(std::move(atom)));
    }
    return seq;
  }

  std::uint32_t parse_number() {
    std::uint32_t v = 0;
    bool any = false;
    while (more() && peek() >= '0' && peek() <= '9') {
      v = v * 10 + static_cast<std::uint32_t>(peek() - '0');
      if (v > 100000) fail("repetition count too large");
      ++i_;
      any = true;
    }
    if (!any) fail("a number was expected in {}");
    return v;
  }

  NodePtr quantified(NodePtr atom) {
    while (more()) {
      int min = 0, max = -1;
      const char32_t q = peek();
      if (q == '*') {
        ++i_;
      } else if (q == '+') {
        ++i_;
        min = 1;
      } else if (q == '?') {
        ++i_;
        max = 1;
      } else if (q == '{') {
        // {n}, {n,}, {n,m}; a '{' that does not start one is a literal (as in Oniguruma).
        const std::size_t save = i_;
        ++i_;
        if (!more() || peek() < '0' || peek() > '9') {
          i_ = save;
          return atom;
        }
        min = static_cast<int>(parse_number());
        max = min;
        if (eat(',')) max = more() && peek() != '}' ? static_cast<int>(parse_number()) : -1;
        if (!eat('}')) fail("unterminated {n,m}");
        if (max >= 0 && max < min) fail("{n,m} with m < n");
      } else {
        return atom;
      }
      auto rep = node(Node::kRepeat);
      rep->min = min;
      rep->max = max;
      if (eat('?'))
        rep->greedy = false;
      else if (more() && peek() == '+')
        fail("possessive quantifiers are not supported");
      rep->kids.push_back(std::move(atom));
      atom = std::move(rep);
    }
    return atom;
  }

  NodePtr set_node(Regex::Set set) {
    auto n = node(Node::kSet);
    n->set = static_cast<std::uint32_t>(re_.sets_.size());
    re_.sets_.push_back(std::move(set));
    return n;
  }

  NodePtr atom() {
    const char32_t c = p_[i_++];
    switch (c) {
      case '(': {
        NodePtr inner;
        if (eat('?')) {
          if (eat(':')) {
            inner = alternation();
          } else if (more() && (peek() == '=' || peek() == '!')) {
            const bool negate = p_[i_++] == '!';
            inner = node(Node::kLook);
            inner->negate = negate;
            inner->kids.push_back(alternation());
          } else if (more() && peek() == '<') {
            fail("lookbehind and named groups are not supported");
          } else {
            fail("group flags such as (?i) are not supported");
          }
        } else {
          inner = alternation();
        }
        if (!eat(')')) fail("( without a matching )");
        return inner;
      }
      case '[':
        return set_node(parse_class());
      case '.':
        return node(Node::kAny);
      case '^':
        return node(Node::kBegin);
      case '$':
        return node(Node::kEnd);
      case '\\':
        return escape();
      case '*':
      case '+':
      case '?':
        fail("a quantifier with nothing before it");
      default: {
        auto n = node(Node::kChar);
        n->c = c;
        return n;
      }
    }
  }

  // A class escape (\s, \d, \p{L}, ...) into `set`; false when `c` is not one. Outside [...]
  // (`alone`) the set holds nothing else, so \S and \H can negate it.
  bool class_escape(char32_t c, Regex::Set& set, bool alone = false) {
    auto add_class = [&](std::uint64_t cats, bool negate) {
      if (negate) {
        if (set.not_categories != 0) fail("two negated classes in one [...]");
        set.not_categories = cats;
      } else {
        set.categories |= cats;
      }
    };
    const auto z =
        category_bit(UTF8PROC_CATEGORY_ZS) | category_bit(UTF8PROC_CATEGORY_ZL) | category_bit(UTF8PROC_CATEGORY_ZP);
    switch (c) {
      case 's':
      case 'S': {
        // White_Space: \t..\r, space, U+0085 and the Z categories.
        if (c == 'S' && !alone) fail("\\S inside [...] is not supported; use [^\\s...]");
        if (alone) set.negated = c == 'S';
        set.ranges.push_back({0x09, 0x0D});
        set.ranges.push_back({0x20, 0x20});
        set.ranges.push_back({0x85, 0x85});
        add_class(z, false);
        return true;
      }
      case 'd':
      case 'D':
        add_class(category_bit(UTF8PROC_CATEGORY_ND), c == 'D');
        return true;
      case 'w':
      case 'W': {
        std::uint64_t m = 0;
        category_mask("L", m);
        std::uint64_t marks = 0, nd = 0, pc = 0;
        category_mask("M", marks);
        category_mask("Nd", nd);
        category_mask("Pc", pc);
        add_class(m | marks | nd | pc, c == 'W');
        return true;
      }
      case 'h':
      case 'H':
        if (c == 'H' && !alone) fail("\\H inside [...] is not supported");
        if (alone) set.negated = c == 'H';
        set.ranges.push_back({0x09, 0x09});
        add_class(category_bit(UTF8PROC_CATEGORY_ZS), false);
        return true;
      case 'p':
      case 'P': {
        std::string name;
        if (eat('{')) {
          bool negate = c == 'P';
          if (eat('^')) negate = !negate;
          while (more() && peek() != '}') name.push_back(static_cast<char>(p_[i_++] & 0x7F));
          if (!eat('}')) fail("unterminated \\p{");
          std::uint64_t m = 0;
          if (!category_mask(name, m)) fail(fmt::format("\\p{{{}}}: only general categories are supported", name));
          add_class(m, negate);
        } else {
          if (!more()) fail("\\p without a category");
          name.push_back(static_cast<char>(p_[i_++] & 0x7F));
          std::uint64_t m = 0;
          if (!category_mask(name, m)) fail(fmt::format("\\p{}: unknown category", name));
          add_class(m, c == 'P');
        }
        return true;
      }
      default:
        return false;
    }
  }

  std::uint32_t hex(std::size_t digits) {
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < digits; ++k) {
      if (!more()) fail("a hexadecimal escape is cut short");
      const char32_t h = p_[i_++];
      v *= 16;
      if (h >= '0' && h <= '9')
        v += h - '0';
      else if (h >= 'a' && h <= 'f')
        v += h - 'a' + 10;
      else if (h >= 'A' && h <= 'F')
        v += h - 'A' + 10;
      else
        fail("a hexadecimal escape with a non-hexadecimal digit");
    }
    return v;
  }

  // A single-character escape after '\' (the character it stands for).
  char32_t char_escape(char32_t c) {
    switch (c) {
      case 't':
        return '\t';
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 'f':
        return '\f';
      case 'v':
        return '\v';
      case 'a':
        return 7;
      case 'e':
        return 27;
      case '0':
        return 0;
      case 'x':
        if (eat('{')) {
          std::uint32_t v = 0;
          while (more() && peek() != '}') v = v * 16 + hex(1);
          if (!eat('}')) fail("unterminated \\x{");
          return v;
        }
        return hex(2);
      case 'u':
        return hex(4);
      default:
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '1' && c <= '9')) {
          fail(fmt::format("the escape \\{} is not supported", static_cast<char>(c)));
        }
        return c;  // escaped punctuation or any other character stands for itself
    }
  }

  NodePtr escape() {
    if (!more()) fail("a pattern that ends with \\");
    const char32_t c = p_[i_++];
    if (c == 'A') return node(Node::kBeginText);
    if (c == 'z') return node(Node::kEndText);
    if (c == 'Z') return node(Node::kEndNewline);
    Regex::Set set;
    if (class_escape(c, set, true)) return set_node(std::move(set));
    auto n = node(Node::kChar);
    n->c = char_escape(c);
    return n;
  }

  Regex::Set parse_class() {
    Regex::Set set;
    if (eat('^')) set.negated = true;
    bool first = true;
    while (more() && (peek() != ']' || first)) {
      first = false;
      char32_t lo = p_[i_++];
      if (lo == '[') fail("nested classes and [:name:] are not supported");
      if (lo == '&' && more() && peek() == '&') fail("class intersection && is not supported");
      if (lo == '\\') {
        if (!more()) fail("a pattern that ends with \\");
        const char32_t e = p_[i_++];
        if (class_escape(e, set)) continue;
        lo = char_escape(e);
      }
      char32_t hi = lo;
      if (more() && peek() == '-' && i_ + 1 < p_.size() && p_[i_ + 1] != ']') {
        ++i_;
        hi = p_[i_++];
        if (hi == '\\') {
          if (!more()) fail("a pattern that ends with \\");
          hi = char_escape(p_[i_++]);
        }
        if (hi < lo) fail("a class range out of order");
      }
      set.ranges.push_back({lo, hi});
    }
    if (!eat(']')) fail("[ without a matching ]");
    return set;
  }

  // --- code generation ---
  std::uint32_t pc() const { return static_cast<std::uint32_t>(re_.prog_.size()); }
  void push(Regex::Inst inst) {
    if (re_.prog_.size() >= kMaxProgram) fail("pattern too large once its repetitions are expanded");
    re_.prog_.push_back(inst);
  }

  void emit(const Node& n) {
    using Op = Regex::Op;
    switch (n.kind) {
      case Node::kChar:
        push({Op::kChar, n.c});
        break;
      case Node::kSet:
        push({Op::kSet, 0, n.set});
        break;
      case Node::kAny:
        push({Op::kAny});
        break;
      case Node::kBegin:
        push({Op::kBegin, 1});
        break;
      case Node::kBeginText:
        push({Op::kBegin, 0});
        break;
      case Node::kEnd:
        push({Op::kEnd, 1});
        break;
      case Node::kEndText:
        push({Op::kEnd, 0});
        break;
      case Node::kEndNewline:
        push({Op::kEndNewline});
        break;
      case Node::kConcat:
        for (const auto& k : n.kids) emit(*k);
        break;
      case Node::kAlt: {
        std::vector<std::uint32_t> jumps;
        for (std::size_t k = 0; k < n.kids.size(); ++k) {
          if (k + 1 < n.kids.size()) {
            const std::uint32_t split = pc();
            push({Op::kSplit, 0, split + 1, 0});
            emit(*n.kids[k]);
            jumps.push_back(pc());
            push({Op::kJump});
            re_.prog_[split].y = pc();
          } else {
            emit(*n.kids[k]);
          }
        }
        for (std::uint32_t j : jumps) re_.prog_[j].x = pc();
        break;
      }
      case Node::kRepeat: {
        const Node& body = *n.kids[0];
        for (int k = 0; k < n.min; ++k) emit(body);
        if (n.max < 0) {  // e*: L1: split L2, L3; L2: e; jump L1; L3:
          const std::uint32_t l1 = pc();
          push({Op::kSplit});
          emit(body);
          push({Op::kJump, 0, l1});
          const std::uint32_t l3 = pc();
          re_.prog_[l1].x = n.greedy ? l1 + 1 : l3;
          re_.prog_[l1].y = n.greedy ? l3 : l1 + 1;
        } else {  // (e(e(e)?)?)? for the optional copies
          std::vector<std::uint32_t> splits;
          for (int k = n.min; k < n.max; ++k) {
            splits.push_back(pc());
            push({Op::kSplit});
            emit(body);
          }
          const std::uint32_t end = pc();
          for (std::uint32_t s : splits) {
            re_.prog_[s].x = n.greedy ? s + 1 : end;
            re_.prog_[s].y = n.greedy ? end : s + 1;
          }
        }
        break;
      }
      case Node::kLook: {
        const std::uint32_t look = pc();
        push({Op::kLook});
        re_.prog_[look].negate = n.negate;
        emit(*n.kids[0]);
        push({Op::kMatch});
        re_.prog_[look].x = pc();
        break;
      }
    }
  }

  Regex& re_;
  std::string_view pattern_;
  std::u32string p_;
  std::size_t i_ = 0;
};

Regex::Regex(std::string_view pattern) : pattern_(pattern) {
  RegexCompiler(*this, pattern).compile();
  split_index_.assign(prog_.size(), 0);
  for (std::size_t pc = 0; pc < prog_.size(); ++pc) {
    if (prog_[pc].op == Op::kSplit) split_index_[pc] = splits_++;
  }
}

namespace {

// Per-thread memo of failed (instruction, position) states, stamped with a generation so that it
// is cleared in O(1). A state that failed once fails again from any start (there are no captures
// or backreferences), so the memo is shared by the searches from every start position and is
// only cleared after a match (whose path must not count as failed) or a lookahead.
struct Memo {
  std::vector<std::uint32_t> stamp;
  std::uint32_t generation = 0;
  std::size_t width = 0;  // text length + 1
  void reset(std::size_t states, std::size_t width_) {
    width = width_;
    if (stamp.size() < states) stamp.assign(states, 0);
    next();
  }
  void next() {
    if (++generation == 0) {
      std::fill(stamp.begin(), stamp.end(), 0);
      generation = 1;
    }
  }
};

thread_local Memo memo;

}  // namespace

bool Regex::run(std::uint32_t start_pc, std::size_t start_pos, const std::u32string& text, std::size_t& end) const {
  thread_local std::vector<std::pair<std::uint32_t, std::size_t>> stack_storage;
  const std::size_t n = text.size();
  std::vector<std::pair<std::uint32_t, std::size_t>> local;  // only for lookaheads (nested runs)
  auto& stack = start_pc == 0 ? stack_storage : local;
  stack.clear();
  stack.emplace_back(start_pc, start_pos);
  while (!stack.empty()) {
    auto [pc, pos] = stack.back();
    stack.pop_back();
    for (;;) {
      const Inst& in = prog_[pc];
      bool ok = true;
      switch (in.op) {
        case Op::kChar:
          ok = pos < n && text[pos] == in.c;
          if (ok) ++pos, ++pc;
          break;
        case Op::kSet:
          ok = pos < n && sets_[in.x].contains(text[pos]);
          if (ok) ++pos, ++pc;
          break;
        case Op::kAny:
          ok = pos < n && text[pos] != '\n';
          if (ok) ++pos, ++pc;
          break;
        case Op::kBegin:
          ok = pos == 0 || (in.c == 1 && text[pos - 1] == '\n');
          ++pc;
          break;
        case Op::kEnd:
          ok = pos == n || (in.c == 1 && text[pos] == '\n');
          ++pc;
          break;
        case Op::kEndNewline:
          ok = pos == n || (pos + 1 == n && text[pos] == '\n');
          ++pc;
          break;
        case Op::kSplit: {
          std::uint32_t& stamp = memo.stamp[static_cast<std::size_t>(split_index_[pc]) * memo.width + pos];
          if (stamp == memo.generation) {
            ok = false;
            break;
          }
          stamp = memo.generation;
          stack.emplace_back(in.y, pos);
          pc = in.x;
          break;
        }
        case Op::kJump:
          pc = in.x;
          break;
        case Op::kMatch:
          end = pos;
          return true;
        case Op::kLook: {
          std::size_t ignored = 0;
          const bool found = run(pc + 1, pos, text, ignored);
          memo.next();  // the nested run shares the memo: forget its marks
          ok = found != in.negate;
          pc = in.x;
          break;
        }
      }
      if (!ok) break;
    }
  }
  return false;
}

void Regex::find_all(const std::u32string& text, std::vector<std::pair<std::size_t, std::size_t>>& out) const {
  out.clear();
  const std::size_t n = text.size();
  memo.reset(static_cast<std::size_t>(splits_) * (n + 1), n + 1);
  const bool literal_start = prog_[0].op == Op::kChar;
  std::size_t pos = 0;
  bool have_last = false;
  std::size_t last_end = 0;
  while (pos <= n) {
    std::size_t start = pos, end = 0;
    bool found = false;
    for (; start <= n; ++start) {
      if (literal_start && (start == n || text[start] != prog_[0].c)) continue;
      if (run(0, start, text, end)) {
        found = true;
        break;
      }
    }
    if (!found) break;
    memo.next();
    if (end == start && have_last && last_end == start) {  // no empty match right after a match
      pos = start + 1;
      continue;
    }
    out.emplace_back(start, end);
    have_last = true;
    last_end = end;
    pos = end > start ? end : start + 1;
  }
}

}  // namespace sluice::tok
