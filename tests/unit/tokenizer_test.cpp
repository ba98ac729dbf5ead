// Tokenizer tests. The parity corpus's reference ids come from the Hugging Face Rust tokenizer
// (npm @anush008/tokenizers), see tests/data/tokenizer/README.md.

#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <simdjson.h>

#include <sluice/error.hpp>
#include <sluice/tokenizer.hpp>

namespace fs = std::filesystem;
using namespace sluice;

namespace {

fs::path data_dir() {
  const char* root = std::getenv("SLUICE_SOURCE_ROOT");
  return fs::path(root ? root : ".") / "tests" / "data" / "tokenizer";
}

const Tokenizer& bert() {
  static auto t = Tokenizer::from_file(data_dir() / "bert-base-uncased" / "tokenizer.json");
  return *t;
}

std::vector<std::int32_t> ids(std::string_view text) { return bert().encode(text).ids; }

}  // namespace

TEST_CASE("WordPiece bert-base-uncased: 100% identical ids to the Hugging Face tokenizer on the corpus") {
  std::ifstream in(data_dir() / "bert-base-uncased.ids.jsonl", std::ios::binary);
  REQUIRE(in.good());
  simdjson::dom::parser parser;
  std::string line;
  std::size_t total = 0, same = 0;
  std::uint64_t tokens = 0;
  double seconds = 0;
  std::vector<std::string> first_mismatches;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    simdjson::dom::element doc = parser.parse(line);
    std::string_view text = doc["text"].get_string();
    std::vector<std::int32_t> expected;
    for (std::int64_t id : doc["ids"].get_array()) expected.push_back(static_cast<std::int32_t>(id));
    auto t0 = std::chrono::steady_clock::now();
    Encoding enc = bert().encode(text);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    tokens += enc.ids.size();
    ++total;
    if (enc.ids == expected) {
      ++same;
    } else if (first_mismatches.size() < 10) {
      first_mismatches.push_back(fmt::format("{:?}\n  expected {}\n  got      {}", std::string(text),
                                             fmt::join(expected, " "), fmt::join(enc.ids, " ")));
    }
  }
  for (const auto& m : first_mismatches) MESSAGE(m);
  MESSAGE(
      fmt::format("{} of {} strings identical; {} tokens at {:.0f} tokens/s", same, total, tokens, tokens / seconds));
  CHECK(total >= 5000);
  CHECK(same == total);
}

TEST_CASE("basic BERT encoding") {
  CHECK(ids("Hello, World!") == std::vector<std::int32_t>{101, 7592, 1010, 2088, 999, 102});
  CHECK(ids("") == std::vector<std::int32_t>{101, 102});
  CHECK(bert().encode("hello", false).ids == std::vector<std::int32_t>{7592});
  CHECK(bert().pad_id() == 0);
  CHECK(bert().token_to_id("[CLS]") == 101);
  CHECK(bert().id_to_token(2015) == "##s");
  CHECK(bert().vocab_size() == 30522);
}

TEST_CASE("special-token text in the input is the special token") {
  CHECK(ids("[CLS] hi [SEP]") == std::vector<std::int32_t>{101, 101, 7632, 102, 102});
  // Added tokens match case-sensitively on the raw text: lowercase is ordinary text.
  auto lower = ids("[cls]");
  CHECK(lower.size() > 3);
}

TEST_CASE("offsets are byte ranges of the original text") {
  std::string text = "Café au lait";
  Encoding enc = bert().encode(text);
  REQUIRE(enc.offsets.size() == enc.ids.size());
  CHECK(enc.offsets.front() == std::pair<std::uint32_t, std::uint32_t>{0, 0});  // [CLS]
  CHECK(enc.offsets[1] == std::pair<std::uint32_t, std::uint32_t>{0, 5});       // "cafe" from "Café" (5 bytes)
  CHECK(text.substr(enc.offsets[2].first, enc.offsets[2].second - enc.offsets[2].first) == "au");
}

TEST_CASE("truncation keeps room for the special tokens and reports the untruncated length") {
  auto t = Tokenizer::from_file(data_dir() / "bert-base-uncased" / "tokenizer.json");
  std::string text;
  for (int i = 0; i < 50; ++i) text += "word ";
  CHECK(t->encode(text).ids.size() == 52);
  t->set_max_length(10);
  Encoding enc = t->encode(text);
  CHECK(enc.ids.size() == 10);
  CHECK(enc.ids.front() == 101);
  CHECK(enc.ids.back() == 102);
  CHECK(enc.untruncated_length == 52);
  CHECK(enc.truncated());
  CHECK_FALSE(t->encode("short").truncated());
}

TEST_CASE("unknown and over-long words") {
  CHECK(ids(std::string(101, 'a')) == std::vector<std::int32_t>{101, 100, 102});
  CHECK(ids("🥰") == std::vector<std::int32_t>{101, 100, 102});
}

TEST_CASE("unsupported or malformed tokenizer files are clear errors") {
  auto bad_type =
      R"({"normalizer":{"type":"Frobnicate"},"pre_tokenizer":null,"model":{"type":"WordPiece","unk_token":"[UNK]","vocab":{"[UNK]":0}}})";
  try {
    Tokenizer::from_json(bad_type);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_model);
    CHECK(std::string(e.what()).find("unsupported normalizer type \"Frobnicate\"") != std::string::npos);
  }
  CHECK_THROWS_AS(Tokenizer::from_json("not json"), Error);
  CHECK_THROWS_AS(Tokenizer::from_json(R"({"model":{"type":"WordPiece","unk_token":"[UNK]","vocab":{"a":0}}})"), Error);
  CHECK_THROWS_AS(Tokenizer::from_file("/nonexistent/tokenizer.json"), Error);
}
