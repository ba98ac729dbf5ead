// Unigram (ALBERT, XLM-RoBERTa, multilingual-e5) parity with the Hugging Face tokenizer; see
// tests/data/tokenizer/README.md for where the files and reference ids come from.

#include <doctest/doctest.h>

#include <sluice/error.hpp>
#include <sluice/tokenizer.hpp>
#include <thread>

#include "tokenizer_parity.hpp"

using namespace sluice;
using namespace sluice::test;

namespace {

const Tokenizer& albert() {
  static auto t = Tokenizer::from_file(tokenizer_data_dir() / "albert" / "tokenizer.json");
  return *t;
}

const Tokenizer& xlm_roberta() {
  static auto t = Tokenizer::from_file(tokenizer_data_dir() / "xlm-roberta" / "tokenizer.json");
  return *t;
}

}  // namespace

TEST_CASE("albert: ids identical to the Hugging Face tokenizer on the whole corpus") {
  const Parity p = check_ids(albert(), tokenizer_data_dir() / "albert.ids.txt");
  CHECK(p.total >= 8000);
  CHECK(p.same == p.total);
}

TEST_CASE("albert: type ids and offsets identical to the Hugging Face tokenizer") {
  const Parity p = check_full(albert(), tokenizer_data_dir() / "albert.full.jsonl");
  CHECK(p.total >= 500);
  CHECK(p.same == p.total);
  const Parity q = check_full(albert(), tokenizer_data_dir() / "albert.nospecial.jsonl", false);
  CHECK(q.same == q.total);
}

TEST_CASE("xlm-roberta: ids identical to the Hugging Face tokenizer on the whole corpus") {
  const Parity p = check_ids(xlm_roberta(), tokenizer_data_dir() / "xlm-roberta.ids.txt");
  CHECK(p.total >= 8000);
  CHECK(p.same == p.total);
}

TEST_CASE("xlm-roberta: type ids and offsets identical to the Hugging Face tokenizer") {
  const Parity p = check_full(xlm_roberta(), tokenizer_data_dir() / "xlm-roberta.full.jsonl");
  CHECK(p.total >= 500);
  CHECK(p.same == p.total);
  const Parity q = check_full(xlm_roberta(), tokenizer_data_dir() / "xlm-roberta.nospecial.jsonl", false);
  CHECK(q.same == q.total);
}

TEST_CASE("Unigram variants: NFKD, NFC, Strip, Prepend, Replace, Metaspace first/never, splits, templates") {
  const std::string base = read_text(tokenizer_data_dir() / "xlm-roberta" / "tokenizer.json");
  for (const std::string name : {"unigram-first", "unigram-never"}) {
    CAPTURE(name);
    const auto dir = tokenizer_data_dir() / "variants";
    auto t = Tokenizer::from_json(with_overrides(base, read_text(dir / (name + ".json"))));
    const Parity p = check_full(*t, dir / (name + ".full.jsonl"));
    CHECK(p.total >= 400);
    CHECK(p.same == p.total);
  }
}

// Expected values in these small cases come from the Hugging Face tokenizer with the same JSON.
TEST_CASE("Unigram: best-scoring segmentation, byte_fallback, fused unknowns, legacy Metaspace add_prefix_space") {
  auto t = Tokenizer::from_json(
      R"({"model":{"type":"Unigram","unk_id":0,"byte_fallback":true,"vocab":[["<unk>",0],)"
      R"(["<0xC3>",-1],["<0xA9>",-1],["\u2581",-2],["\u2581a",-1.5],["b",-3],["ab",-2.5],["a",-2]]},)"
      R"("pre_tokenizer":{"type":"Metaspace","replacement":"\u2581","add_prefix_space":true}})");
  const std::string text = "ab \xC3\xA9 a b";  // "ab é a b"
  const Encoding enc = t->encode(text, false);
  CHECK(enc.ids == std::vector<std::int32_t>{3, 6, 3, 1, 2, 4, 3, 5});
  CHECK(to_char_offsets(text, enc.offsets) == Offsets{{0, 1}, {0, 2}, {2, 3}, {3, 4}, {3, 4}, {4, 6}, {6, 7}, {7, 8}});
  // "zz": two unknown characters are one unknown token (no <0x7A> byte token to fall back on).
  const Encoding zz = t->encode("zz", false);
  CHECK(zz.ids == std::vector<std::int32_t>{3, 0});
  CHECK(to_char_offsets("zz", zz.offsets) == Offsets{{0, 1}, {0, 2}});
  CHECK(t->vocab_size() == 8);
  CHECK(t->id_to_token(6) == "ab");
  CHECK(t->token_to_id("\xE2\x96\x81"
                       "a") == 4);
}

// Expected ids from the JavaScript tokenizer of @energetic-ai/embeddings 0.2.0 (dist/index.js,
// class Tokenizer, which tfjs-models' Universal Sentence Encoder has too), run with node on this
// vocabulary: its first six entries reserved, entry 0 "\uFFFD", the rest as below.
TEST_CASE("Unigram with \"sluice_lattice\": \"tfjs\" segments as TensorFlow.js' tokenizer does") {
  const std::string normalizer =
      R"("normalizer":{"type":"Sequence","normalizers":[{"type":"NFKC"},)"
      R"({"type":"Replace","pattern":{"String":" "},"content":"\u2581"},{"type":"Prepend","prepend":"\u2581"}]})";
  const std::string vocab =
      R"("vocab":[["<unk> ",0],["r1 ",0],["r2 ",0],["r3 ",0],["r4 ",0],["r5 ",0],["\u2581",-1],["a",-1],["aa",-2],)"
      R"(["b",-1.5],[":",0],["\u2581:",0],["c",-4],["ab",-2.5],["\u2581a",-1.5]])";
  auto tfjs = Tokenizer::from_json("{" + normalizer + R"(,"model":{"type":"Unigram","unk_id":0,)" + vocab +
                                   R"(,"sluice_lattice":"tfjs"}})");
  auto hf = Tokenizer::from_json("{" + normalizer + R"(,"model":{"type":"Unigram","unk_id":0,)" + vocab + "}}");
  using Ids = std::vector<std::int32_t>;
  const std::vector<std::pair<std::string, Ids>> cases = {
      {"aaa", {14, 7, 7}},   {"aaaa", {14, 7, 7, 7}}, {"zab", {6, 0, 7, 9}},    {"z a", {6, 0, 14}},
      {"b:", {6, 9, 10}},    {"::a", {6, 10, 10, 7}}, {":b", {6, 10, 9}},       {"a:b", {14, 10, 9}},
      {"x", {6, 0}},         {"", {}}};
  for (const auto& [text, ids] : cases) {
    CAPTURE(text);
    CHECK(tfjs->encode(text, false).ids == ids);
  }
  // Where the two differ: ties ("aaa": a+a after "\u2581a", or aa), and a best score of 0 ("::a").
  CHECK(hf->encode("aaa", false).ids != Ids{14, 7, 7});
  CHECK(hf->encode("::a", false).ids != Ids{6, 10, 10, 7});
  CHECK_THROWS_WITH_AS(
      Tokenizer::from_json(R"({"model":{"type":"Unigram","vocab":[["a",0.0]],"sluice_lattice":"js"}})"),
      "tokenizer.json: Unigram \"sluice_lattice\" is \"js\"; sluice knows \"hugging_face\" and \"tfjs\"",
      Error);
}

TEST_CASE("albert: the real model's normalization, special tokens and template") {
  // [CLS]=2 and [SEP]=3 around the pieces; "``" becomes '"' and case and accents go.
  const Encoding enc = albert().encode("``Caf\xC3\xA9''");
  REQUIRE(enc.ids.size() >= 3);
  CHECK(enc.ids.front() == 2);
  CHECK(enc.ids.back() == 3);
  CHECK(albert().encode("``Caf\xC3\xA9''").ids == albert().encode("\"cafe\"").ids);
  CHECK(albert().pad_id() == 0);
  CHECK(albert().token_to_id("[MASK]") == 4);
  CHECK(albert().vocab_size() == 30000);
}

TEST_CASE("Unigram encode is safe from several threads at once") {
  const std::vector<std::string> texts = {"Hello, World!", "Caf\xC3\xA9 au lait", "\xE4\xB8\xAD\xE6\x96\x87 text",
                                          "<s> x </s> <mask>", std::string(300, 'z')};
  std::vector<std::vector<std::int32_t>> expected;
  for (const auto& s : texts) expected.push_back(xlm_roberta().encode(s).ids);
  std::vector<int> failures(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int i = 0; i < 2000; ++i) {
        const std::size_t j = static_cast<std::size_t>(i + k) % texts.size();
        if (xlm_roberta().encode(texts[j]).ids != expected[j]) ++failures[static_cast<std::size_t>(k)];
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == std::vector<int>(4, 0));
}

TEST_CASE("malformed Unigram and Precompiled settings are clear errors") {
  auto error_of = [](std::string_view json) -> std::string {
    try {
      Tokenizer::from_json(json);
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::invalid_model);
      return e.what();
    }
    return "no error";
  };
  CHECK(error_of(R"({"model":{"type":"Unigram","unk_id":5,"vocab":[["a",0.0]]}})") ==
        "tokenizer.json: Unigram unk_id 5 is outside the vocabulary of 1 pieces");
  CHECK(error_of(R"({"model":{"type":"Unigram","vocab":[["a"]]}})") ==
        "tokenizer.json: a Unigram vocab entry is not [piece, score]");
  CHECK(error_of(R"({"normalizer":{"type":"Precompiled","precompiled_charsmap":"AQ=="},)"
                 R"("model":{"type":"Unigram","vocab":[["a",0.0]]}})") ==
        "tokenizer.json: Precompiled normalizer: precompiled_charsmap is too short");
  CHECK(error_of(R"({"normalizer":{"type":"Replace","pattern":{"Regex":"a\\1"},"content":""},)"
                 R"("model":{"type":"Unigram","vocab":[["a",0.0]]}})")
            .starts_with("tokenizer.json: regex \"a\\1\": the escape \\1 is not supported"));
}
