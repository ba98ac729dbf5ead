// Tokenizer tests. Reference ids, type ids and offsets come from the Hugging Face Rust
// tokenizer (npm @anush008/tokenizers); see tests/data/tokenizer/README.md.

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <simdjson.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sluice/error.hpp>
#include <sluice/tokenizer.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tokenizer/tokenizer_json.hpp"
#include "test_skip.hpp"
#include "tokenizer_parity.hpp"

namespace fs = std::filesystem;
using namespace sluice;

namespace {

using Offsets = std::vector<std::pair<std::uint32_t, std::uint32_t>>;

fs::path data_dir() {
  const char* root = std::getenv("SLUICE_SOURCE_ROOT");
  return fs::path(root ? root : ".") / "tests" / "data" / "tokenizer";
}

const Tokenizer& bert() {
  static auto t = Tokenizer::from_file(data_dir() / "bert-base-uncased" / "tokenizer.json");
  return *t;
}

std::vector<std::int32_t> ids(std::string_view text) { return bert().encode(text).ids; }

// Byte offsets to the code point offsets that the Hugging Face bindings report.
Offsets to_char_offsets(std::string_view text, const Offsets& bytes) {
  // index[i]: characters that start before byte i.
  std::vector<std::uint32_t> index(text.size() + 1, 0);
  for (std::size_t i = 0; i < text.size(); ++i) {
    index[i + 1] = index[i] + ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80 ? 1 : 0);
  }
  Offsets out;
  for (auto [b, e] : bytes) out.emplace_back(index[b], index[e]);
  return out;
}

struct Parity {
  std::size_t total = 0;
  std::size_t same = 0;
  std::uint64_t tokens = 0;
  double seconds = 0;
};

// Encodes every line of a reference file and compares ids (and, when the file has them,
// type ids and offsets).
Parity check_parity(const Tokenizer& t, const fs::path& file, bool add_special_tokens = true) {
  std::ifstream in(file, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), file.string());
  simdjson::dom::parser parser;
  std::string line;
  Parity p;
  std::vector<std::string> mismatches;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    simdjson::dom::element doc = parser.parse(line);
    const std::string_view text = doc["text"].get_string();
    std::vector<std::int32_t> want_ids, want_types;
    Offsets want_offsets;
    for (std::int64_t id : doc["ids"].get_array()) want_ids.push_back(static_cast<std::int32_t>(id));
    const bool full = doc["offsets"].error() == simdjson::SUCCESS;
    if (full) {
      for (std::int64_t id : doc["type_ids"].get_array()) want_types.push_back(static_cast<std::int32_t>(id));
      for (simdjson::dom::array o : doc["offsets"].get_array()) {
        want_offsets.emplace_back(static_cast<std::uint32_t>(std::int64_t(o.at(0))),
                                  static_cast<std::uint32_t>(std::int64_t(o.at(1))));
      }
    }
    const auto t0 = std::chrono::steady_clock::now();
    const Encoding enc = t.encode(text, add_special_tokens);
    p.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    p.tokens += enc.ids.size();
    ++p.total;
    bool ok = enc.ids == want_ids && enc.type_ids.size() == enc.ids.size() && enc.offsets.size() == enc.ids.size();
    Offsets got_offsets;
    if (ok && full) {
      got_offsets = to_char_offsets(text, enc.offsets);
      ok = enc.type_ids == want_types && got_offsets == want_offsets;
    }
    if (ok) {
      ++p.same;
    } else if (mismatches.size() < 8) {
      mismatches.push_back(fmt::format("{:?}\n  expected ids {}\n  got          {}", std::string(text),
                                       fmt::join(want_ids, " "), fmt::join(enc.ids, " ")));
      if (full) {
        mismatches.back() +=
            fmt::format("\n  expected types {} offsets {}\n  got      types {} offsets {}", fmt::join(want_types, " "),
                        want_offsets, fmt::join(enc.type_ids, " "), got_offsets);
      }
    }
  }
  for (const auto& m : mismatches) MESSAGE(m);
  MESSAGE(fmt::format("{}: {} of {} identical", file.filename().string(), p.same, p.total));
  return p;
}

}  // namespace

TEST_CASE("bert-base-uncased: ids identical to the Hugging Face tokenizer on the whole corpus") {
  const Parity p = check_parity(bert(), data_dir() / "bert-base-uncased.ids.jsonl");
  MESSAGE(fmt::format("{} tokens at {:.2f} M tokens/s (single thread, inside the test)", p.tokens,
                      p.tokens / p.seconds / 1e6));
  CHECK(p.total >= 8000);
  CHECK(p.same == p.total);
}

TEST_CASE("bert-base-uncased: type ids and offsets identical to the Hugging Face tokenizer") {
  const Parity p = check_parity(bert(), data_dir() / "bert-base-uncased.full.jsonl");
  CHECK(p.total >= 2000);
  CHECK(p.same == p.total);
  const Parity q = check_parity(bert(), data_dir() / "bert-base-uncased.nospecial.jsonl", false);
  CHECK(q.total >= 500);
  CHECK(q.same == q.total);
}

TEST_CASE("bert-base-uncased with set_max_length(16): identical to Hugging Face's setTruncation(16)") {
  auto t = Tokenizer::from_file(data_dir() / "bert-base-uncased" / "tokenizer.json");
  CHECK_FALSE(t->max_length());
  t->set_max_length(16);
  CHECK(t->max_length() == 16u);
  const Parity p = check_parity(*t, data_dir() / "bert-base-uncased.max16.jsonl");
  CHECK(p.total >= 1500);
  CHECK(p.same == p.total);
}

TEST_CASE("variant tokenizers: other normalizers, pre-tokenizers, templates, added tokens, truncation") {
  for (const std::string name : {"seq-whitespace", "cased-template"}) {
    CAPTURE(name);
    auto t = Tokenizer::from_file(data_dir() / "variants" / name / "tokenizer.json");
    const Parity p = check_parity(*t, data_dir() / "variants" / (name + ".full.jsonl"));
    CHECK(p.total >= 1500);
    CHECK(p.same == p.total);
    const Parity q = check_parity(*t, data_dir() / "variants" / (name + ".nospecial.jsonl"), false);
    CHECK(q.total >= 500);
    CHECK(q.same == q.total);
  }
}

TEST_CASE("basic BERT encoding") {
  CHECK(ids("Hello, World!") == std::vector<std::int32_t>{101, 7592, 1010, 2088, 999, 102});
  CHECK(ids("") == std::vector<std::int32_t>{101, 102});
  CHECK(ids(" \t\n") == std::vector<std::int32_t>{101, 102});
  CHECK(bert().encode("hello", false).ids == std::vector<std::int32_t>{7592});
  CHECK(bert().encode("", false).ids.empty());
  CHECK(bert().pad_id() == 0);
  CHECK(bert().token_to_id("[CLS]") == 101);
  CHECK(bert().token_to_id("hello") == 7592);
  CHECK_FALSE(bert().token_to_id("no-such-token"));
  CHECK(bert().id_to_token(2015) == "##s");
  CHECK(bert().id_to_token(103) == "[MASK]");
  CHECK_FALSE(bert().id_to_token(30522));
  CHECK_FALSE(bert().id_to_token(-1));
  CHECK(bert().vocab_size() == 30522);
}

TEST_CASE("special-token text in the input is the special token") {
  CHECK(ids("[CLS] hi [SEP]") == std::vector<std::int32_t>{101, 101, 7632, 102, 102});
  CHECK(ids("[PAD] x") == std::vector<std::int32_t>{101, 0, 1060, 102});
  CHECK(ids("a[MASK]b") == std::vector<std::int32_t>{101, 1037, 103, 1038, 102});
  // Special tokens match case-sensitively on the raw text: "[cls]" is ordinary text.
  CHECK(ids("[cls]") == std::vector<std::int32_t>{101, 1031, 18856, 2015, 1033, 102});
  const Encoding enc = bert().encode("x [SEP]");
  CHECK(enc.offsets[2] == std::pair<std::uint32_t, std::uint32_t>{2, 7});
}

TEST_CASE("offsets are byte ranges of the original text") {
  const std::string text = "Café au lait, \xE4\xB8\xAD\xE6\x96\x87 \xC4\xB0stanbul";  // "Café au lait, 中文 İstanbul"
  const Encoding enc = bert().encode(text);
  REQUIRE(enc.offsets.size() == enc.ids.size());
  auto piece = [&](std::size_t i) {
    return text.substr(enc.offsets[i].first, enc.offsets[i].second - enc.offsets[i].first);
  };
  CHECK(enc.offsets.front() == std::pair<std::uint32_t, std::uint32_t>{0, 0});  // [CLS]
  CHECK(piece(1) == "Caf\xC3\xA9");                                             // "cafe" covers "Café" (5 bytes)
  CHECK(piece(2) == "au");
  CHECK(piece(3) == "lai");  // "lait" is "lai" "##t"
  CHECK(piece(4) == "t");
  CHECK(piece(5) == ",");
  CHECK(piece(6) == "\xE4\xB8\xAD");     // 中
  CHECK(piece(7) == "\xE6\x96\x87");     // 文
  CHECK(piece(8) == "\xC4\xB0stanbul");  // "istanbul" (lowercase İ is two characters)
  CHECK(enc.offsets.back() == std::pair<std::uint32_t, std::uint32_t>{0, 0});  // [SEP]
}

// Marks that are non-starters (combining class not 0) but not Mn in Hugging Face's Unicode 8
// category tables (U+08D4, U+1B44, U+302E, U+302F, U+1D165, U+1D16D, U+1E018, ...) survive
// strip_accents, and NFD's canonical ordering moves them. Hugging Face's NormalizedString gives
// the ranges by position, not with the moved characters (so a survivor may get the range of a
// mark that is then dropped). Ranges carried with the characters gave a token an empty or
// reversed range (fuzz_tokenizer: "s < end && end <= text.size()"; the input is the corpus seed
// tests/fuzz/corpus/tokenizer/reordered_marks). Expected ids and offsets: the Hugging Face
// tokenizer (tools/reference/tokenize_reference.mjs --full), code points turned into bytes.
TEST_CASE("reordered combining marks keep Hugging Face's offsets") {
  struct Case {
    std::string text;
    std::vector<std::int32_t> ids;
    Offsets offsets;
  };
  const std::vector<Case> cases = {
      // " " U+08D4 U+1B44: one [UNK] over both marks (was [4, 4)).
      {" \xE0\xA3\x94\xE1\xAD\x84", {101, 100, 102}, {{0, 0}, {1, 7}, {0, 0}}},
      // "`" U+1E018 U+FFFD U+302F U+0011, from the fuzzer: [UNK] over the three characters
      // (was [8, 5)).
      {"`\xF0\x9E\x80\x98\xEF\xBF\xBD\xE3\x80\xAF\x11", {101, 1036, 100, 102}, {{0, 0}, {0, 1}, {1, 11}, {0, 0}}},
      // "a" U+0301 U+1B44: U+1B44 moves before U+0301 and takes its range.
      {"a\xCC\x81\xE1\xAD\x84", {101, 100, 102}, {{0, 0}, {0, 3}, {0, 0}}},
      // "Ab" U+1D16D U+1D165 ", " U+1E09 U+1B44 U+08D4 " " U+4E00 U+302F U+0316 U+302E " end"
      {"Ab\xF0\x9D\x85\xAD\xF0\x9D\x85\xA5, \xE1\xB8\x89\xE1\xAD\x84\xE0\xA3\x94 "
       "\xE4\xB8\x80\xE3\x80\xAF\xCC\x96\xE3\x80\xAE end",
       {101, 100, 1010, 100, 1740, 100, 2203, 102},
       {{0, 0}, {0, 10}, {10, 11}, {12, 21}, {22, 25}, {28, 33}, {34, 37}, {0, 0}}},
      // "x" U+302F U+302E U+302F " y"
      {"x\xE3\x80\xAF\xE3\x80\xAE\xE3\x80\xAF y", {101, 100, 1061, 102}, {{0, 0}, {0, 10}, {11, 12}, {0, 0}}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    const Encoding enc = bert().encode(c.text);
    CHECK(enc.ids == c.ids);
    CHECK(enc.offsets == c.offsets);
  }
  // Every pair of such marks, alone or after a letter or a space: each token's range is
  // non-empty, inside the text and on character boundaries, and starts do not go back.
  const std::vector<std::string> marks = {"\xE0\xA3\x94",     "\xE1\xAD\x84",     "\xE3\x80\xAE",
                                          "\xE3\x80\xAF",     "\xF0\x9D\x85\xA5", "\xF0\x9D\x85\xAD",
                                          "\xF0\x9E\x80\x98", "\xF0\x91\x8D\x8D", "\xCC\x81"};
  auto boundary = [](const std::string& t, std::uint32_t at) {
    return at == t.size() || (at < t.size() && (static_cast<unsigned char>(t[at]) & 0xC0) != 0x80);
  };
  for (const char* prefix : {"", "a", " ", "\xC3\xA9"}) {
    for (const std::string& a : marks) {
      for (const std::string& b : marks) {
        const std::string text = prefix + a + b;
        CAPTURE(text);
        const Encoding enc = bert().encode(text, false);
        std::uint32_t previous = 0;
        for (auto [start, end] : enc.offsets) {
          CHECK(start < end);
          CHECK(end <= text.size());
          CHECK(boundary(text, start));
          CHECK(boundary(text, end));
          CHECK(start >= previous);
          previous = start;
        }
      }
    }
  }
}

TEST_CASE("truncation keeps room for the special tokens and reports the untruncated length") {
  auto t = Tokenizer::from_file(data_dir() / "bert-base-uncased" / "tokenizer.json");
  std::string text;
  for (int i = 0; i < 50; ++i) text += "word ";
  CHECK(t->encode(text).ids.size() == 52);
  CHECK_FALSE(t->encode(text).truncated());
  t->set_max_length(10);
  const Encoding enc = t->encode(text);
  CHECK(enc.ids.size() == 10);
  CHECK(enc.type_ids.size() == 10);
  CHECK(enc.offsets.size() == 10);
  CHECK(enc.ids.front() == 101);
  CHECK(enc.ids.back() == 102);
  CHECK(enc.offsets[8] == std::pair<std::uint32_t, std::uint32_t>{35, 39});  // the 8th "word"
  CHECK(enc.untruncated_length == 52);
  CHECK(enc.truncated());
  CHECK_FALSE(t->encode("short").truncated());
  // Without special tokens the whole budget is for the text.
  CHECK(t->encode(text, false).ids.size() == 10);
  CHECK(t->encode(text, false).untruncated_length == 50);
  // A limit below the special tokens keeps only them.
  t->set_max_length(1);
  CHECK(t->encode(text).ids == std::vector<std::int32_t>{101, 102});
}

TEST_CASE("truncation from the file: direction left") {
  auto t = Tokenizer::from_file(data_dir() / "variants" / "seq-whitespace" / "tokenizer.json");
  CHECK(t->max_length() == 24u);
  std::string text;
  for (int i = 0; i < 40; ++i) text += fmt::format("{} ", i);
  const Encoding enc = t->encode(text);
  CHECK(enc.ids.size() == 24);
  CHECK(enc.untruncated_length == 42);
  // The last words are kept: the one before [SEP] is "39".
  CHECK(text.substr(enc.offsets[22].first, enc.offsets[22].second - enc.offsets[22].first) == "39");
  // set_max_length() replaces the file's truncation: right side.
  t->set_max_length(5);
  const Encoding right = t->encode(text);
  CHECK(right.ids.size() == 5);
  CHECK(text.substr(right.offsets[1].first, right.offsets[1].second - right.offsets[1].first) == "0");
}

TEST_CASE("unknown and over-long words") {
  CHECK(ids(std::string(100, 'a')) != std::vector<std::int32_t>{101, 100, 102});  // 100 chars: split into pieces
  CHECK(ids(std::string(101, 'a')) == std::vector<std::int32_t>{101, 100, 102});  // 101 chars: [UNK]
  const std::string long_word(101, 'a');
  const Encoding enc = bert().encode("x " + long_word + " y");
  CHECK(enc.offsets[2] == std::pair<std::uint32_t, std::uint32_t>{2, 103});
  CHECK(ids("\xF0\x9F\xA5\xB0") == std::vector<std::int32_t>{101, 100, 102});   // 🥰: not in the vocabulary
  CHECK(ids("\xF0\x9F\xA5\xB0x") == std::vector<std::int32_t>{101, 100, 102});  // one unknown piece: whole word
}

TEST_CASE("text that is only removed characters") {
  CHECK(ids(std::string("\0\x01\x7f", 3)) == std::vector<std::int32_t>{101, 102});
  CHECK(ids("\xE2\x80\x8B\xEF\xBB\xBF") == std::vector<std::int32_t>{101, 102});  // ZWSP, BOM
}

TEST_CASE("encode is safe from several threads at once") {
  std::vector<std::string> texts = {"Hello, World!", "Café au lait", "\xE4\xB8\xAD\xE6\x96\x87", "[CLS] x [SEP]",
                                    std::string(150, 'z')};
  std::vector<std::vector<std::int32_t>> expected;
  for (const auto& s : texts) expected.push_back(ids(s));
  std::vector<int> failures(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int i = 0; i < 2000; ++i) {
        const std::size_t j = static_cast<std::size_t>(i + k) % texts.size();
        if (bert().encode(texts[j]).ids != expected[j]) ++failures[static_cast<std::size_t>(k)];
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == std::vector<int>(4, 0));
}

namespace {

std::string error_of(std::string_view json) {
  try {
    Tokenizer::from_json(json);
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_model);
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("unsupported or malformed tokenizer files are clear errors") {
  const std::string model = R"("model":{"type":"WordPiece","unk_token":"[UNK]","vocab":{"[UNK]":0,"a":1}})";
  CHECK(error_of(R"({"normalizer":{"type":"ByteLevel"},)" + model + "}") ==
        "tokenizer.json: unsupported normalizer type \"ByteLevel\"");
  CHECK(error_of(R"({"pre_tokenizer":{"type":"Frobnicate"},)" + model + "}") ==
        "tokenizer.json: unsupported pre_tokenizer type \"Frobnicate\"");
  CHECK(error_of(R"({"post_processor":{"type":"Frobnicate"},)" + model + "}") ==
        "tokenizer.json: unsupported post_processor type \"Frobnicate\"");
  CHECK(error_of(R"({"model":{"type":"WordLevel","unk_token":"a","vocab":{"a":0}}})") ==
        "tokenizer.json: unsupported model type \"WordLevel\"");
  CHECK(error_of(R"({"normalizer":{"type":"Sequence","normalizers":[{"type":"NFKC"},{"type":"Nmt"}]},)" + model +
                 "}") == "tokenizer.json: unsupported normalizer type \"Nmt\"");
  CHECK(error_of(R"({"model":{"type":"WordPiece","unk_token":"[UNK]","vocab":{"a":0}}})") ==
        "tokenizer.json: WordPiece unk_token \"[UNK]\" is not in the vocabulary");
  CHECK(error_of(R"({"model":{"type":"WordPiece","unk_token":"[UNK]","vocab":{"[UNK]":-3}}})") ==
        "tokenizer.json: vocab entry \"[UNK]\" is not a valid token id");
  CHECK(error_of(R"({"normalizer":null})") == "tokenizer.json: \"model\" is missing");
  CHECK(error_of("not json").starts_with("tokenizer.json: not valid JSON"));
  CHECK(error_of("[1, 2]") == "tokenizer.json: the top level is not an object");
  CHECK(error_of(R"({"truncation":{"max_length":8,"direction":"Middle"},)" + model + "}") ==
        "tokenizer.json: truncation: unsupported direction \"Middle\"");
  try {
    Tokenizer::from_file("/nonexistent/tokenizer.json");
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_model);
    CHECK(std::string(e.what()).starts_with("/nonexistent/tokenizer.json: cannot read"));
  }
}

TEST_CASE("added token ids are Hugging Face's, not the file's") {
  // Expected values from the Hugging Face tokenizer with this file: "ab" is in the vocabulary,
  // so it is id 1; "zz" is new, so it follows the vocabulary (2), whatever "id" says.
  auto t = Tokenizer::from_json(
      R"({"added_tokens":[{"id":7,"content":"ab","special":true},{"id":9,"content":"zz","special":true}],)"
      R"("model":{"type":"WordPiece","unk_token":"[UNK]","vocab":{"[UNK]":0,"ab":1}}})");
  CHECK(t->encode("ab zz").ids == std::vector<std::int32_t>{1, 0, 2});
  CHECK(t->token_to_id("ab") == 1);
  CHECK(t->token_to_id("zz") == 2);
  CHECK_FALSE(t->id_to_token(9));
  CHECK(t->vocab_size() == 3);
}

TEST_CASE("a minimal file: no normalizer, pre-tokenizer or post-processor") {
  auto t = Tokenizer::from_json(R"({"model":{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##",)"
                                R"("max_input_chars_per_word":100,"vocab":{"[UNK]":0,"ab":1,"##c":2,"<pad>":3}}})");
  CHECK(t->encode("abc").ids == std::vector<std::int32_t>{1, 2});
  CHECK(t->encode("abd").ids == std::vector<std::int32_t>{0});
  CHECK(t->encode("abc", false).ids == std::vector<std::int32_t>{1, 2});
  CHECK(t->pad_id() == 3);  // no padding settings: "<pad>"
  CHECK(t->vocab_size() == 4);
  CHECK_FALSE(t->max_length());
}

// Reference: tools/reference/window_reference.mjs (setTruncation(64, {stride: 16}) and
// getOverflowing()) on the first 400 texts of tests/data/reference/texts.jsonl.
TEST_CASE("encode_windows: the windows Hugging Face's truncation with a stride overflows into") {
  for (const std::string kind : {"bert-base-uncased", "roberta"}) {
    CAPTURE(kind);
    auto t = Tokenizer::from_file(data_dir() / kind / "tokenizer.json");
    std::ifstream texts(data_dir().parent_path() / "reference" / "texts.jsonl");
    std::ifstream windows(data_dir() / (kind + ".windows-64-16.jsonl"));
    simdjson::dom::parser p1, p2;
    std::string text_line, window_line;
    std::size_t records = 0, multi = 0, same = 0;
    while (std::getline(windows, window_line) && std::getline(texts, text_line)) {
      std::string_view text = p1.parse(text_line)["text"].get_string().value();
      std::vector<std::vector<std::int32_t>> want;
      for (simdjson::dom::element w : p2.parse(window_line)["windows"].get_array()) {
        std::vector<std::int32_t> ids;
        for (simdjson::dom::element id : w.get_array()) ids.push_back(static_cast<std::int32_t>(id.get_int64()));
        want.push_back(std::move(ids));
      }
      std::vector<std::vector<std::int32_t>> got;
      for (auto& e : t->encode_windows(text, 64, 16)) got.push_back(e.ids);
      ++records;
      multi += want.size() > 1;
      same += got == want;
      if (got != want) FAIL_CHECK(fmt::format("record {}: {} windows, want {}", records, got.size(), want.size()));
    }
    CHECK(records == 400);
    CHECK(multi > 100);  // many texts need several windows
    CHECK(same == records);
  }
  auto t = Tokenizer::from_file(data_dir() / "bert-base-uncased" / "tokenizer.json");
  CHECK_THROWS_AS(t->encode_windows("a b c", 18, 16), std::invalid_argument);
  // Offsets of a window point into the original text.
  auto w = t->encode_windows("alpha beta gamma delta epsilon", 5, 1);
  REQUIRE(w.size() == 2);
  CHECK(w[0].ids.size() == 5);
  CHECK(w[1].offsets[1] == std::pair<std::uint32_t, std::uint32_t>{11, 16});  // "gamma" again
}

// A long text truncated on the right is tokenised a growing prefix at a time, cut before
// whitespace, where the tokenizer's parts allow it (Tokenizer::encode). The kept tokens must be
// those of the whole text: checked against the same tokenizer without truncation, on every
// folder and variant of the parity tests, for texts made of the parity corpus (its Unicode,
// punctuation, CJK and emoji included) and several lengths.
TEST_CASE("a long text truncated on the right keeps the whole text's first tokens, read a prefix at a time") {
  const fs::path dir = sluice::test::tokenizer_data_dir();
  std::vector<std::string> texts;
  {
    std::ifstream in(dir / "corpus.jsonl", std::ios::binary);
    simdjson::dom::parser parser;
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      simdjson::dom::element doc = parser.parse(line);
      texts.emplace_back(std::string_view(doc["text"].get_string()));
    }
  }
  REQUIRE(texts.size() > 1000);
  // Long texts: corpus strings joined by various whitespace, over 64 KiB (where the prefix
  // path starts) and up to 1 MiB (past 128 KiB, the whole text is tokenised a segment at a
  // time). Then texts without whitespace, where only the cuts between other characters help:
  // corpus strings with their whitespace taken out, joined by punctuation or by nothing;
  // minified code; a base64-like run of letters and digits; digits and letters alternating.
  // Under a sanitizer (10 to 20 times slower) fewer and shorter texts, the segment path still
  // taken (past 128 KiB).
  std::vector<std::size_t> spaced_sizes = {70u << 10, 300u << 10, 1u << 20};
  std::vector<std::size_t> unspaced_sizes = {100u << 10, 300u << 10};
  if (sluice::test::kSanitized) {
    spaced_sizes = {70u << 10, 140u << 10};
    unspaced_sizes = {70u << 10, 140u << 10};
  }
  std::vector<std::string> long_texts;
  std::mt19937 rng(17);
  for (const std::size_t target : spaced_sizes) {
    std::string t;
    const char* seps[] = {" ", "  ", "\n", "\t ", " \r\n", "\f", "\v "};
    while (t.size() < target) {
      t += texts[rng() % texts.size()];
      t += seps[rng() % 7];
    }
    long_texts.push_back(std::move(t));
  }
  auto without_whitespace = [](std::string t) {
    std::erase_if(t, [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; });
    return t;
  };
  // Past 128 KiB (segments) only the punctuated kinds: a blob is one word, slow to tokenise whole.
  for (const std::size_t target : unspaced_sizes) {
    std::string joined, punctuated, code, blob, mixed;
    const char* puncts[] = {".", ",", ";", "(", ")", "{", "}", "=", "+", "/", "'", "\"", "-", "_", "[", "]"};
    while (joined.size() < target) joined += without_whitespace(texts[rng() % texts.size()]);
    while (punctuated.size() < target) {
      punctuated += without_whitespace(texts[rng() % texts.size()]);
      punctuated += puncts[rng() % 16];
    }
    while (code.size() < target) code += fmt::format("function f{}(a,b){{return a[{}]+b.x{}||'s';}}var v{}=[1,2,3];", rng() % 1000, rng() % 9, rng() % 7, rng() % 100);
    const char* b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    while (blob.size() < target) blob += b64[rng() % 62];
    // Blobs between words, as one word each (BERT: one unknown token, given without reading it).
    std::string blobs;
    while (blobs.size() < target) {
      blobs += without_whitespace(texts[rng() % texts.size()]).substr(0, 40);
      blobs += " +"[rng() % 2];
      for (std::size_t k = 0, n = 50 + rng() % 400; k < n; ++k) blobs += b64[rng() % 62];
      blobs += " .\f"[rng() % 3];
    }
    long_texts.push_back(std::move(blobs));
    while (mixed.size() < target) mixed += rng() % 2 ? fmt::format("{}", rng() % 1000) : std::string(1 + rng() % 5, char('a' + rng() % 26));
    if (target > (128u << 10)) {
      for (std::string* t : {&punctuated, &code}) long_texts.push_back(std::move(*t));
    } else {
      for (std::string* t : {&joined, &punctuated, &code, &blob, &mixed}) long_texts.push_back(std::move(*t));
    }
  }
  using sluice::test::read_text;
  using sluice::test::with_overrides;
  std::vector<std::pair<std::string, std::string>> tokenizers;  // name, tokenizer.json
  for (const char* name : {"bert-base-uncased", "roberta", "xlm-roberta", "albert", "variants/cased-template",
                           "variants/seq-whitespace"}) {
    tokenizers.emplace_back(name, read_text(dir / name / "tokenizer.json"));
  }
  const fs::path v = dir / "variants";
  for (const char* name : {"roberta-prefix", "bpe-splits", "bpe-regex"}) {
    tokenizers.emplace_back(name, with_overrides(read_text(dir / "roberta" / "tokenizer.json"),
                                                 read_text(v / (std::string(name) + ".json"))));
  }
  for (const char* name : {"unigram-first", "unigram-never"}) {
    tokenizers.emplace_back(name, with_overrides(read_text(dir / "xlm-roberta" / "tokenizer.json"),
                                                 read_text(v / (std::string(name) + ".json"))));
  }
  std::size_t prefix_runs = 0;
  for (const auto& [name, json] : tokenizers) {
    CAPTURE(name);
    auto tok = Tokenizer::from_json(json);
    for (const std::string& text : long_texts) {
      CAPTURE(text.substr(0, 60));
      tok->set_max_length(std::size_t{1} << 40);  // no truncation: the whole text, read whole
      sluice::tok::set_long_text_cuts(false);
      const Encoding whole = tok->encode(text, false);
      const Encoding whole_special = tok->encode(text, true);
      sluice::tok::set_long_text_cuts(true);
      CHECK_FALSE(whole.length_is_lower_bound);
      // A segment at a time (past 128 KiB, where the parts allow it): the same tokens.
      const Encoding segmented = tok->encode(text, true);
      CHECK(segmented.ids == whole_special.ids);
      CHECK(segmented.offsets == whole_special.offsets);
      CHECK(tok->count_tokens(text, true) == whole_special.ids.size());
      CHECK(tok->count_tokens(text, false) == whole.ids.size());
      for (const std::size_t max : {8u, 128u, 512u, 4096u}) {
        CAPTURE(max);
        CAPTURE(text.size());
        tok->set_max_length(max);
        const Encoding cut = tok->encode(text, false);
        prefix_runs += cut.length_is_lower_bound;
        if (whole.ids.size() <= max) {  // one unknown token for a whole blob, say: nothing to cut
          CHECK(cut.ids == whole.ids);
          CHECK_FALSE(cut.truncated());
          continue;
        }
        CHECK(cut.ids == std::vector<std::int32_t>(whole.ids.begin(), whole.ids.begin() + max));
        CHECK(cut.offsets == decltype(cut.offsets)(whole.offsets.begin(), whole.offsets.begin() + max));
        CHECK(cut.truncated());
        CHECK(cut.untruncated_length <= whole.ids.size());
        // With special tokens: the whole text's specials around its first content tokens.
        const Encoding cut_special = tok->encode(text, true);
        const std::size_t specials = whole_special.ids.size() - whole.ids.size();
        std::size_t before = 0;
        while (before < specials &&
               !std::equal(whole.ids.begin(), whole.ids.begin() + std::min<std::size_t>(64, whole.ids.size()),
                           whole_special.ids.begin() + before)) {
          ++before;
        }
        std::vector<std::int32_t> want(whole_special.ids.begin(), whole_special.ids.begin() + before);
        want.insert(want.end(), whole.ids.begin(), whole.ids.begin() + (max - specials));
        want.insert(want.end(), whole_special.ids.end() - (specials - before), whole_special.ids.end());
        CHECK(cut_special.ids == want);
      }
    }
  }
  // The prefix path did run (the parity folders are BERT, RoBERTa and SentencePiece layouts).
  MESSAGE("prefix path taken in " << prefix_runs << " encodings");
  CHECK(prefix_runs > 0);
}
