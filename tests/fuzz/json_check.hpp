#pragma once
// An independent, deliberately simple JSON reader for the fuzz targets' differential checks.
// It shares no code with simdjson or lib/: a recursive-descent parser written from RFC 8259
// and a UTF-8 validator written from RFC 3629, so that "the library accepts X" can be compared
// with "the grammar says X is valid" on arbitrary bytes.
//
// Not for production: it is slow, recursive, and keeps only what the checks need (the root's
// type and, for a root object, its members in order with unescaped keys and string values).

#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::fuzz {

enum class Kind : std::uint8_t { none, object, array, string, number, boolean, null };

struct Member {
  std::string key;  ///< unescaped (a lone surrogate escape is written as its 3-byte form)
  Kind kind = Kind::none;
  std::string value;     ///< unescaped, only for strings
  std::string_view raw;  ///< the value's bytes in the document, for numbers, booleans, null
};

struct JsonDoc {
  bool utf8_ok = false;  ///< the whole input is well-formed UTF-8 (RFC 3629)
  bool valid = false;    ///< one JSON value, surrounded only by JSON whitespace
  Kind root = Kind::none;
  std::vector<Member> members;  ///< the root object's members, in order (duplicates kept)
  std::size_t max_depth = 0;    ///< deepest nesting of arrays/objects (root object: 1)
  bool lone_surrogate = false;  ///< some string has a \uD800-\uDFFF escape without its pair
  /// Some number is an integer outside [INT64_MIN, UINT64_MAX] or overflows a double: valid
  /// JSON that simdjson refuses (NUMBER_ERROR / BIGINT_ERROR).
  bool number_out_of_range = false;
};

/// Offset of the first byte of `s` not part of a well-formed UTF-8 sequence, or s.size().
inline std::size_t utf8_error_at(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    std::size_t len;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return i;
    }
    i += len;
  }
  return n;
}

inline bool is_utf8(std::string_view s) noexcept { return utf8_error_at(s) == s.size(); }

/// Appends code point `cp` as UTF-8 (surrogates too, as 3 bytes: the form a lax decoder emits).
inline void put_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace detail {

class Reader {
 public:
  explicit Reader(std::string_view s, JsonDoc& doc) : s_(s), doc_(doc) {}

  bool document() {
    ws();
    Kind k;
    std::string ignored;
    if (!value(1, k, ignored, true)) return false;
    doc_.root = k;
    ws();
    return i_ == s_.size();
  }

 private:
  static constexpr std::size_t kGiveUpDepth = 2000;  // far past simdjson's 1024

  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }
  static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  bool hex4(std::uint32_t& out) {
    if (i_ + 4 > s_.size()) return false;
    out = 0;
    for (int k = 0; k < 4; ++k) {
      const int h = hex(s_[i_ + static_cast<std::size_t>(k)]);
      if (h < 0) return false;
      out = (out << 4) | static_cast<std::uint32_t>(h);
    }
    i_ += 4;
    return true;
  }

  bool string(std::string& out) {
    if (!eat('"')) return false;
    out.clear();
    while (i_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return false;
      if (c != '\\') {
        out.push_back(static_cast<char>(c));
        ++i_;
        continue;
      }
      ++i_;
      if (i_ >= s_.size()) return false;
      const char e = s_[i_++];
      switch (e) {
        case '"':
          out.push_back('"');
          break;
        case '\\':
          out.push_back('\\');
          break;
        case '/':
          out.push_back('/');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          std::uint32_t cp;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            // A high surrogate pairs with an immediately following \uDC00-\uDFFF escape.
            std::uint32_t low = 0;
            const std::size_t save = i_;
            if (s_.substr(i_, 2) == "\\u" && (i_ += 2, hex4(low)) && low >= 0xDC00 && low <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else {
              i_ = save;
              doc_.lone_surrogate = true;
            }
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            doc_.lone_surrogate = true;
          }
          put_utf8(out, cp);
          break;
        }
        default:
          return false;
      }
    }
    return false;  // no closing quote
  }

  bool number() {
    const std::size_t start = i_;
    auto digit = [&] { return i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9'; };
    eat('-');
    if (eat('0')) {
    } else if (digit()) {
      while (digit()) ++i_;
    } else {
      return false;
    }
    bool integer = true;
    if (eat('.')) {
      integer = false;
      if (!digit()) return false;
      while (digit()) ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      integer = false;
      if (!eat('+')) eat('-');
      if (!digit()) return false;
      while (digit()) ++i_;
    }
    range_check(s_.substr(start, i_ - start), integer);
    return true;
  }

  void range_check(std::string_view num, bool integer) {
    const std::string text(num);
    errno = 0;
    if (integer) {
      if (text[0] == '-') {
        (void)std::strtoll(text.c_str(), nullptr, 10);
      } else {
        (void)std::strtoull(text.c_str(), nullptr, 10);
      }
      if (errno == ERANGE) doc_.number_out_of_range = true;
    } else if (std::isinf(std::strtod(text.c_str(), nullptr))) {
      doc_.number_out_of_range = true;
    }
  }

  // `top`: this value is the root (its members are recorded when it is an object).
  bool value(std::size_t depth, Kind& kind, std::string& str, bool top) {
    if (i_ >= s_.size()) return false;
    const char c = s_[i_];
    if (c == '{' || c == '[') {
      if (depth > doc_.max_depth) doc_.max_depth = depth;
      if (depth > kGiveUpDepth) return false;
    }
    if (c == '{') {
      ++i_;
      kind = Kind::object;
      ws();
      if (eat('}')) return true;
      for (;;) {
        ws();
        Member m;
        if (!string(m.key)) return false;
        ws();
        if (!eat(':')) return false;
        ws();
        const std::size_t vstart = i_;
        if (!value(depth + 1, m.kind, m.value, false)) return false;
        if (m.kind != Kind::string && m.kind != Kind::object && m.kind != Kind::array) {
          m.raw = s_.substr(vstart, i_ - vstart);
        }
        if (top) doc_.members.push_back(std::move(m));
        ws();
        if (eat('}')) return true;
        if (!eat(',')) return false;
      }
    }
    if (c == '[') {
      ++i_;
      kind = Kind::array;
      ws();
      if (eat(']')) return true;
      for (;;) {
        ws();
        Kind k;
        std::string ignored;
        if (!value(depth + 1, k, ignored, false)) return false;
        ws();
        if (eat(']')) return true;
        if (!eat(',')) return false;
      }
    }
    if (c == '"') {
      kind = Kind::string;
      return string(str);
    }
    if (c == 't' || c == 'f') {
      kind = Kind::boolean;
      return literal(c == 't' ? "true" : "false");
    }
    if (c == 'n') {
      kind = Kind::null;
      return literal("null");
    }
    kind = Kind::number;
    return number();
  }

  std::string_view s_;
  JsonDoc& doc_;
  std::size_t i_ = 0;
};

}  // namespace detail

/// Reads `s` as one JSON document.
inline JsonDoc read_json(std::string_view s) {
  JsonDoc doc;
  doc.utf8_ok = is_utf8(s);
  detail::Reader r(s, doc);
  doc.valid = r.document();
  if (!doc.valid) {
    doc.root = Kind::none;
    doc.members.clear();
  }
  return doc;
}

/// Unicode's White_Space property (PropList.txt, Unicode 15), written out again here.
inline bool is_unicode_white_space(std::uint32_t cp) noexcept {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

/// Decodes well-formed UTF-8 `s` into code points.
inline std::vector<std::uint32_t> code_points(std::string_view s) {
  std::vector<std::uint32_t> out;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned c = p[i];
    std::size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    std::uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (std::size_t k = 1; k < len && i + k < s.size(); ++k) cp = (cp << 6) | (p[i + k] & 0x3F);
    out.push_back(cp);
    i += len;
  }
  return out;
}

}  // namespace sluice::fuzz
