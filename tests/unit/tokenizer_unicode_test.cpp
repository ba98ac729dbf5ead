// Every Unicode code point through sluice's normalizers and pre-tokenizers, against what the
// Hugging Face Rust tokenizer does with it (tests/data/tokenizer/unicode_reference.tsv and
// unicode_forms.tsv, written by tools/reference/unicode_reference.mjs and
// unicode_forms_reference.mjs, which describe the formats).

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/normalizer.hpp"
#include "tokenizer/pre_tokenizer.hpp"
#include "tokenizer/unicode.hpp"

namespace fs = std::filesystem;
using namespace sluice::tok;

namespace {

fs::path data_dir() {
  const char* root = std::getenv("SLUICE_SOURCE_ROOT");
  return fs::path(root ? root : ".") / "tests" / "data" / "tokenizer";
}

// clean, chinese, strip, lower, pretok, mark, nfd, word: the reference's fields.
using Fields = std::vector<std::string>;

std::unordered_map<char32_t, Fields> read_reference() {
  std::unordered_map<char32_t, Fields> ref;
  std::ifstream in(data_dir() / "unicode_reference.tsv");
  REQUIRE(in.good());
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string key;
    std::getline(ls, key, '\t');
    Fields f;
    std::string x;
    while (std::getline(ls, x, '\t')) f.push_back(x);
    REQUIRE(f.size() == 8);
    const auto dots = key.find("..");
    const auto first = static_cast<char32_t>(std::stoul(key.substr(0, dots), nullptr, 16));
    const auto last =
        dots == std::string::npos ? first : static_cast<char32_t>(std::stoul(key.substr(dots + 2), nullptr, 16));
    for (char32_t c = first; c <= last; ++c) ref[c] = f;
  }
  return ref;
}

std::string field(char32_t c, const Symbols& s) {
  if (s.size() == 1 && s[0].c == c) return "=";
  if (s.empty()) return "-";
  std::string out;
  for (const auto& sym : s) out += fmt::format("{}{:x}", out.empty() ? "" : ",", static_cast<std::uint32_t>(sym.c));
  return out;
}

}  // namespace

TEST_CASE("every code point: normalizers and pre-tokenizers as the Hugging Face tokenizer") {
  const auto ref = read_reference();
  const Fields identity{"=", "0", "=", "=", "1", "=", "=", "1"};
  const BertNormalizer clean(true, false, false, false), chinese(false, true, false, false),
      strip(false, false, true, false), lower(false, false, false, true);
  const BertPreTokenizer pre;
  const StripAccentsNormalizer mark;
  const NfdNormalizer nfd;
  const WhitespacePreTokenizer word;
  const char* names[] = {"clean_text",       "handle_chinese_chars", "strip_accents", "lowercase",
                         "BertPreTokenizer", "StripAccents",         "NFD",           "Whitespace"};
  std::size_t checked = 0, mismatched = 0;
  std::vector<std::string> first;
  for (char32_t c = 0; c <= 0x10FFFF; ++c) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    Symbols a{{c, 0, 1}}, b = a, d = a, e = a, m = a, n = a;
    clean.normalize(a, 0);
    chinese.normalize(b, 0);
    strip.normalize(d, 0);
    lower.normalize(e, 0);
    mark.normalize(m, 0);
    nfd.normalize(n, 0);
    Symbols p{{'a', 0, 1}, {c, 1, 2}, {'a', 2, 3}}, q = p;
    std::vector<Span> words{{0, 3}}, runs{{0, 3}};
    pre.pre_tokenize(p, words);
    word.pre_tokenize(q, runs);
    const Fields ours{field(c, a), b.size() > 1 ? "1" : "0",     field(c, d),
                      field(c, e), std::to_string(words.size()), field(c, m),
                      field(c, n), std::to_string(runs.size())};
    auto it = ref.find(c);
    const Fields& expected = it == ref.end() ? identity : it->second;
    ++checked;
    if (ours != expected) {
      ++mismatched;
      for (std::size_t i = 0; i < ours.size(); ++i) {
        if (ours[i] != expected[i] && first.size() < 20) {
          first.push_back(fmt::format("U+{:04X} {}: expected {} got {}", static_cast<std::uint32_t>(c), names[i],
                                      expected[i], ours[i]));
        }
      }
    }
  }
  for (const auto& m : first) MESSAGE(m);
  MESSAGE(fmt::format("{} code points checked, {} differ", checked, mismatched));
  CHECK(checked == 0x110000 - 0x800);
  CHECK(mismatched == 0);
}

TEST_CASE("character classes") {
  CHECK(is_whitespace(U' '));
  CHECK(is_whitespace(U'\u3000'));
  CHECK(is_whitespace(U'\u0085'));
  CHECK_FALSE(is_whitespace(U'\u200b'));  // ZERO WIDTH SPACE is Cf, not White_Space
  CHECK(is_control(U'\u200b'));
  CHECK(is_control(U'\ue000'));            // private use
  CHECK_FALSE(is_control(U'\U000E0080'));  // unassigned: kept by BertNormalizer
  CHECK(is_punctuation(U'$'));             // ASCII punctuation includes symbols
  CHECK(is_punctuation(U'\u3002'));
  CHECK_FALSE(is_punctuation(U'\u2E50'));  // Unicode 13 punctuation: not in Hugging Face's tables
  CHECK(is_chinese_char(U'\u4e2d'));
  CHECK_FALSE(is_chinese_char(U'\U0002B820'));  // Hugging Face's range starts at U+2B920
  CHECK(is_word_char(U'_'));
  CHECK(is_word_char(U'\u0301'));
  CHECK_FALSE(is_word_char(U'-'));
  std::u32string s;
  append_lowercase(U'\u0130', s);
  CHECK(s == U"i\u0307");
}

TEST_CASE("BertNormalizer keeps each output character's original byte range") {
  const BertNormalizer bert(true, true, true, true);
  Symbols s;
  decode_utf8("\xC3\x89t\xC3\xA9 \xE4\xB8\xAD", 0, s);  // "Été 中"
  bert.normalize(s, 0);
  std::string text;
  for (const auto& sym : s) append_utf8(text, sym.c);
  CHECK(text == "ete  \xE4\xB8\xAD ");
  REQUIRE(s.size() == 7);
  CHECK(s[0].start == 0);
  CHECK(s[0].end == 2);  // "e" from "É"
  CHECK(s[2].start == 3);
  CHECK(s[2].end == 5);  // "e" from "é"
  CHECK(s[5].start == 6);
  CHECK(s[5].end == 9);  // "中"
}

TEST_CASE("NFD reorders combining marks canonically") {
  const NfdNormalizer nfd;
  Symbols s;
  decode_utf8("a\xCC\x81\xCC\xA3", 0, s);  // a, U+0301 (ccc 230), U+0323 (ccc 220)
  nfd.normalize(s, 0);
  REQUIRE(s.size() == 3);
  CHECK(s[1].c == 0x323);
  CHECK(s[2].c == 0x301);
}

TEST_CASE("every code point: ByteLevel regex classes and NFC, NFKC, NFKD identical to Hugging Face's") {
  std::ifstream in(data_dir() / "unicode_forms.tsv");
  REQUIRE(in.good());
  std::vector<char> want_class(0x110000, '?');
  std::unordered_map<std::string, std::unordered_map<char32_t, std::string>> want_form;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string kind, key, value;
    ls >> kind >> key >> value;
    if (kind == "class") {
      const auto dots = key.find("..");
      const auto first = std::stoul(key.substr(0, dots), nullptr, 16);
      const auto last = std::stoul(key.substr(dots + 2), nullptr, 16);
      for (auto c = first; c <= last; ++c) want_class[c] = value[0];
    } else {
      want_form[kind][static_cast<char32_t>(std::stoul(key, nullptr, 16))] = value;
    }
  }
  const NfcNormalizer nfc(false), nfkc(true);
  const NfkdNormalizer nfkd;
  const std::pair<const char*, const Normalizer*> forms[] = {{"NFC", &nfc}, {"NFKC", &nfkc}, {"NFKD", &nfkd}};
  std::size_t checked = 0, mismatched = 0;
  std::vector<std::string> first;
  auto note = [&](std::string m) {
    ++mismatched;
    if (first.size() < 20) first.push_back(std::move(m));
  };
  for (char32_t c = 0; c <= 0x10FFFF; ++c) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    ++checked;
    const std::uint16_t k = char_class(c);
    const char got = (k & kLetter) != 0 ? 'L' : (k & kNumber) != 0 ? 'N' : (k & kWhitespace) != 0 ? 'S' : 'O';
    if (got != want_class[c]) {
      note(fmt::format("U+{:04X} ByteLevel class: expected {} got {}", static_cast<std::uint32_t>(c), want_class[c],
                       got));
    }
    for (const auto& [name, n] : forms) {
      Symbols s{{c, 0, 1}};
      n->normalize(s, 0);
      std::string out = field(c, s);
      const auto& table = want_form[name];
      auto it = table.find(c);
      const std::string want = it == table.end() ? "=" : it->second;
      if (out != want) {
        note(fmt::format("U+{:04X} {}: expected {} got {}", static_cast<std::uint32_t>(c), name, want, out));
      }
    }
  }
  for (const auto& m : first) MESSAGE(m);
  MESSAGE(fmt::format("{} code points checked, {} differences", checked, mismatched));
  CHECK(checked == 0x110000 - 0x800);
  CHECK(mismatched == 0);
}
