#include "code/ignore.hpp"

#include <cctype>

namespace sluice::code {

namespace {

enum Match { kMatch, kNoMatch, kAbortAll, kAbortToStarStar };

// [...] at p (just past "["): whether c is in the class; `p` moves past "]". False with p at
// the end when the class is not closed (then "[" is no class and matches nothing).
bool match_class(std::string_view pat, std::size_t& p, unsigned char c, bool& closed) {
  bool negated = false;
  if (p < pat.size() && (pat[p] == '!' || pat[p] == '^')) {
    negated = true;
    ++p;
  }
  bool found = false;
  bool first = true;
  closed = false;
  while (p < pat.size()) {
    // A POSIX class: [:alpha:], [:digit:], ...
    if (pat[p] == '[' && p + 1 < pat.size() && pat[p + 1] == ':') {
      const std::size_t close = pat.find(":]", p + 2);
      if (close != std::string_view::npos) {
        const std::string_view name = pat.substr(p + 2, close - p - 2);
        const int ch = c;
        const bool in = name == "alpha"    ? std::isalpha(ch) != 0
                        : name == "digit"  ? std::isdigit(ch) != 0
                        : name == "alnum"  ? std::isalnum(ch) != 0
                        : name == "upper"  ? std::isupper(ch) != 0
                        : name == "lower"  ? std::islower(ch) != 0
                        : name == "space"  ? std::isspace(ch) != 0
                        : name == "punct"  ? std::ispunct(ch) != 0
                        : name == "xdigit" ? std::isxdigit(ch) != 0
                        : name == "blank"  ? (ch == ' ' || ch == '\t')
                        : name == "cntrl"  ? std::iscntrl(ch) != 0
                        : name == "graph"  ? std::isgraph(ch) != 0
                        : name == "print"  ? std::isprint(ch) != 0
                                           : false;
        if (in) found = true;
        p = close + 2;
        first = false;
        continue;
      }
    }
    unsigned char lo = static_cast<unsigned char>(pat[p]);
    if (lo == ']' && !first) {
      ++p;
      closed = true;
      return found != negated;
    }
    first = false;
    if (lo == '\\' && p + 1 < pat.size()) lo = static_cast<unsigned char>(pat[++p]);
    ++p;
    if (p + 1 < pat.size() && pat[p] == '-' && pat[p + 1] != ']') {
      unsigned char hi = static_cast<unsigned char>(pat[p + 1]);
      p += 2;
      if (hi == '\\' && p < pat.size()) hi = static_cast<unsigned char>(pat[p++]);
      if (lo <= c && c <= hi) found = true;
    } else if (lo == c) {
      found = true;
    }
  }
  return false;
}

// git's wildmatch (wildmatch.c) with WM_PATHNAME: the abort codes keep a pattern of many
// stars linear instead of exponential in the text.
Match dowild(std::string_view pat, std::size_t p, std::string_view text, std::size_t t) {
  for (; p < pat.size(); ++p, ++t) {
    const char pc = pat[p];
    if (t >= text.size() && pc != '*') return kAbortAll;
    switch (pc) {
      case '\\':
        if (p + 1 < pat.size()) ++p;
        if (text[t] != pat[p]) return kNoMatch;
        break;
      case '?':
        if (text[t] == '/') return kNoMatch;
        break;
      case '[': {
        if (text[t] == '/') return kNoMatch;
        std::size_t q = p + 1;
        bool closed = false;
        const bool in = match_class(pat, q, static_cast<unsigned char>(text[t]), closed);
        if (!closed) return kAbortAll;
        if (!in) return kNoMatch;
        p = q - 1;
        break;
      }
      case '*': {
        bool match_slash = false;
        const std::size_t stars = p;
        while (p + 1 < pat.size() && pat[p + 1] == '*') ++p;
        if (p > stars) {
          // "**": only between slashes (or the ends) is it the folder wildcard.
          const bool start_ok = stars == 0 || pat[stars - 1] == '/';
          const bool end_ok = p + 1 == pat.size() || pat[p + 1] == '/';
          if (start_ok && end_ok) {
            // "**/x" also matches "x" at this level.
            if (p + 1 < pat.size() && dowild(pat, p + 2, text, t) == kMatch) return kMatch;
            match_slash = true;
          }
        }
        ++p;  // past the stars
        if (p == pat.size()) {
          // A trailing star matches the rest, unless the rest has a "/" and it is not "**".
          if (!match_slash && text.find('/', t) != std::string_view::npos) return kAbortToStarStar;
          return kMatch;
        }
        for (; t < text.size(); ++t) {
          const Match m = dowild(pat, p, text, t);
          if (m != kNoMatch) {
            if (!match_slash || m != kAbortToStarStar) return m;
          } else if (!match_slash && text[t] == '/') {
            return kAbortToStarStar;
          }
        }
        return kAbortAll;
      }
      default:
        if (text[t] != pc) return kNoMatch;
        break;
    }
  }
  return t >= text.size() ? kMatch : kNoMatch;
}

std::string_view basename(std::string_view path) {
  const auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace

bool wildmatch(std::string_view pattern, std::string_view text) { return dowild(pattern, 0, text, 0) == kMatch; }

void IgnoreFile::add_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty() || line.front() == '#') return;
  // Trailing spaces are cut unless escaped.
  while (!line.empty() && line.back() == ' ') {
    std::size_t backslashes = 0;
    for (std::size_t i = line.size() - 1; i > 0 && line[i - 1] == '\\'; --i) ++backslashes;
    if (backslashes % 2 == 1) break;
    line.remove_suffix(1);
  }
  if (line.empty()) return;
  // A pattern ending in one unescaped backslash matches nothing (git).
  {
    std::size_t backslashes = 0;
    for (std::size_t i = line.size(); i > 0 && line[i - 1] == '\\'; --i) ++backslashes;
    if (backslashes % 2 == 1) return;
  }
  Rule r;
  if (line.front() == '!') {
    r.negate = true;
    line.remove_prefix(1);
  }
  if (!line.empty() && line.back() == '/') {
    r.dir_only = true;
    line.remove_suffix(1);
  }
  if (line.empty()) return;
  // A "/" at the start or in the middle anchors the pattern to the file's folder.
  if (line.find('/') != std::string_view::npos) r.anchored = true;
  if (line.front() == '/') line.remove_prefix(1);
  if (line.empty()) return;
  r.pattern.assign(line);
  rules_.push_back(std::move(r));
}

IgnoreFile IgnoreFile::parse(std::string_view text) {
  IgnoreFile f;
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);  // a UTF-8 BOM, as git skips it
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    f.add_line(text.substr(start, nl - start));
    start = nl + 1;
  }
  return f;
}

IgnoreFile IgnoreFile::from_patterns(const std::vector<std::string>& patterns) {
  IgnoreFile f;
  for (const std::string& p : patterns) f.add_line(p);
  return f;
}

std::optional<bool> IgnoreFile::match(std::string_view path, bool is_dir) const {
  for (auto it = rules_.rbegin(); it != rules_.rend(); ++it) {
    const Rule& r = *it;
    if (r.dir_only && !is_dir) continue;
    const bool hit = r.anchored ? wildmatch(r.pattern, path) : wildmatch(r.pattern, basename(path));
    if (hit) return !r.negate;
  }
  return std::nullopt;
}

std::string escape_glob(std::string_view path) {
  std::size_t keep = path.size();
  while (keep > 0 && path[keep - 1] == ' ') --keep;
  std::string out;
  for (std::size_t i = 0; i < path.size(); ++i) {
    const char c = path[i];
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\' || c == '!' || c == '#' || i >= keep) {
      out.push_back('\\');
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace sluice::code
