// Byte-level BPE (RoBERTa, CodeBERT, GPT-2) parity with the Hugging Face tokenizer; see
// tests/data/tokenizer/README.md for where the files and reference ids come from.

#include <doctest/doctest.h>

#include <sluice/error.hpp>
#include <sluice/tokenizer.hpp>
#include <thread>

#include "tokenizer_parity.hpp"

using namespace sluice;
using namespace sluice::test;

namespace {

const Tokenizer& roberta() {
  static auto t = Tokenizer::from_file(tokenizer_data_dir() / "roberta" / "tokenizer.json");
  return *t;
}

}  // namespace

TEST_CASE("roberta: ids identical to the Hugging Face tokenizer on the whole corpus") {
  const Parity p = check_ids(roberta(), tokenizer_data_dir() / "roberta.ids.txt");
  CHECK(p.total >= 8000);
  CHECK(p.same == p.total);
}

TEST_CASE("roberta: type ids and offsets (trim_offsets) identical to the Hugging Face tokenizer") {
  const Parity p = check_full(roberta(), tokenizer_data_dir() / "roberta.full.jsonl");
  CHECK(p.total >= 500);
  CHECK(p.same == p.total);
  const Parity q = check_full(roberta(), tokenizer_data_dir() / "roberta.nospecial.jsonl", false);
  CHECK(q.total >= 200);
  CHECK(q.same == q.total);
}

TEST_CASE(
    "byte-level BPE variants: NFKC, Strip, prefix space, Split, Digits, Punctuation, regex, ByteLevel processor") {
  const std::string base = read_text(tokenizer_data_dir() / "roberta" / "tokenizer.json");
  for (const std::string name : {"roberta-prefix", "bpe-splits", "bpe-regex"}) {
    CAPTURE(name);
    const auto dir = tokenizer_data_dir() / "variants";
    auto t = Tokenizer::from_json(with_overrides(base, read_text(dir / (name + ".json"))));
    const Parity p = check_full(*t, dir / (name + ".full.jsonl"));
    CHECK(p.total >= 400);
    CHECK(p.same == p.total);
  }
}

namespace {

// Ids and character offsets, as the Hugging Face bindings report them.
std::pair<std::vector<std::int32_t>, Offsets> encode_chars(const Tokenizer& t, std::string_view text) {
  const Encoding enc = t.encode(text, false);
  return {enc.ids, to_char_offsets(text, enc.offsets)};
}

}  // namespace

// Expected values in these small cases come from the Hugging Face tokenizer with the same JSON.
TEST_CASE("BPE: continuing_subword_prefix, end_of_word_suffix, fuse_unk, merges given as strings") {
  auto t =
      Tokenizer::from_json(R"({"model":{"type":"BPE","unk_token":"<unk>","fuse_unk":true,)"
                           R"("continuing_subword_prefix":"##","end_of_word_suffix":"</w>","vocab":{"<unk>":0,"a":1,)"
                           R"("##b":2,"##c":3,"c":4,"##b</w>":5,"ab</w>":6,"a##b</w>":7,"ab":8,"##c</w>":9,)"
                           R"("abc</w>":10,"a</w>":11,"b</w>":12},"merges":["a ##b</w>","a ##b"]},)"
                           R"("pre_tokenizer":{"type":"Whitespace"}})");
  CHECK(encode_chars(*t, "ab abc c zc ab") ==
        std::pair{std::vector<std::int32_t>{6, 8, 9, 0, 0, 9, 6},
                  Offsets{{0, 2}, {3, 5}, {5, 6}, {7, 8}, {9, 10}, {10, 11}, {12, 14}}});
  CHECK(encode_chars(*t, "a") == std::pair{std::vector<std::int32_t>{11}, Offsets{{0, 1}}});
  CHECK(encode_chars(*t, "zz q") == std::pair{std::vector<std::int32_t>{0, 0}, Offsets{{0, 2}, {3, 4}}});
}

TEST_CASE("BPE: byte_fallback, ignore_merges, merges given as pairs, no unk_token") {
  auto t = Tokenizer::from_json(R"({"model":{"type":"BPE","byte_fallback":true,"ignore_merges":true,)"
                                R"("vocab":{"<0x41>":0,"<0xC3>":1,"<0xA9>":2,"x":3,"y":4,"xy":5,"xyx":6,"<unk>":7},)"
                                R"("merges":[["x","y"]]},"pre_tokenizer":{"type":"WhitespaceSplit"}})");
  // "xyx" is in the vocabulary: one token although no merge makes it; "z" has no byte token and
  // there is no unk_token: it is dropped.
  CHECK(encode_chars(*t, "xyx xy xyxy A\xC3\xA9 z Az") ==
        std::pair{std::vector<std::int32_t>{6, 5, 5, 5, 0, 1, 2, 0},
                  Offsets{{0, 3}, {4, 6}, {7, 9}, {9, 11}, {12, 13}, {13, 14}, {13, 14}, {17, 18}}});
}

TEST_CASE("byte-level BPE: the GPT-2 split, prefix space and trimmed offsets") {
  // "Hello" "Ġworld" "!" "ĠĠ" ... as GPT-2 splits: a space stays with the word after it.
  const Encoding enc = roberta().encode("Hello world!  x", false);
  REQUIRE(enc.ids.size() == 5);
  CHECK(roberta().id_to_token(enc.ids[0]) == "Hello");
  CHECK(roberta().id_to_token(enc.ids[1]) == "\xC4\xA0world");  // "Ġworld"
  CHECK(roberta().id_to_token(enc.ids[2]) == "!");
  CHECK(roberta().id_to_token(enc.ids[3]) == "\xC4\xA0");  // the first of two spaces alone
  CHECK(roberta().id_to_token(enc.ids[4]) == "\xC4\xA0x");
  // trim_offsets: "Ġworld" covers "world", not the space before it.
  CHECK(enc.offsets[1] == std::pair<std::uint32_t, std::uint32_t>{6, 11});
  CHECK(roberta().encode("").ids == std::vector<std::int32_t>{0, 2});
  CHECK(roberta().token_to_id("<mask>") == 50261);
  CHECK(roberta().vocab_size() == 50262);
  CHECK(roberta().pad_id() == 1);
}

TEST_CASE("unsupported BPE settings are clear errors") {
  auto error_of = [](std::string_view json) -> std::string {
    try {
      Tokenizer::from_json(json);
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::invalid_model);
      return e.what();
    }
    return "no error";
  };
  CHECK(error_of(R"({"model":{"type":"BPE","dropout":0.1,"vocab":{"a":0},"merges":[]}})") ==
        "tokenizer.json: BPE dropout is not supported (it makes encoding random); set \"dropout\" to null");
  CHECK(error_of(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":["a b"]}})") ==
        "tokenizer.json: BPE merge 0 (\"a b\") uses \"b\", which is not in the vocabulary");
  CHECK(error_of(R"j({"pre_tokenizer":{"type":"Split","pattern":{"Regex":"(?i:ab)"},"behavior":"Isolated"},)j"
                 R"j("model":{"type":"BPE","vocab":{"a":0},"merges":[]}})j")
            .starts_with("tokenizer.json: regex \"(?i:ab)\": group flags such as (?i) are not supported"));
  CHECK(error_of(R"j({"pre_tokenizer":{"type":"Split","pattern":{"Regex":"(?<=a)b"},"behavior":"Isolated"},)j"
                 R"j("model":{"type":"BPE","vocab":{"a":0},"merges":[]}})j")
            .starts_with("tokenizer.json: regex \"(?<=a)b\": lookbehind and named groups are not supported"));
  CHECK(error_of(R"({"pre_tokenizer":{"type":"UnicodeScripts"},"model":{"type":"BPE","vocab":{"a":0},"merges":[]}})") ==
        "tokenizer.json: unsupported pre_tokenizer type \"UnicodeScripts\"");
}

TEST_CASE("byte-level BPE encode is safe from several threads at once") {
  const std::vector<std::string> texts = {"Hello, World!", "Caf\xC3\xA9 au lait", "\xE4\xB8\xAD\xE6\x96\x87 text",
                                          "<s> x </s> <mask>", std::string(300, 'z')};
  std::vector<std::vector<std::int32_t>> expected;
  for (const auto& s : texts) expected.push_back(roberta().encode(s).ids);
  std::vector<int> failures(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int i = 0; i < 2000; ++i) {
        const std::size_t j = static_cast<std::size_t>(i + k) % texts.size();
        if (roberta().encode(texts[j]).ids != expected[j]) ++failures[static_cast<std::size_t>(k)];
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == std::vector<int>(4, 0));
}
