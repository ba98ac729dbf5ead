#pragma once
// Helpers shared by the tokenizer parity tests: they encode every line of a reference file written
// by tools/reference/tokenize_reference.mjs (the Hugging Face Rust tokenizer) and compare.

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <simdjson.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sluice/tokenizer.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace sluice::test {

namespace fs = std::filesystem;
using Offsets = std::vector<std::pair<std::uint32_t, std::uint32_t>>;

inline fs::path tokenizer_data_dir() {
  const char* root = std::getenv("SLUICE_SOURCE_ROOT");
  return fs::path(root ? root : ".") / "tests" / "data" / "tokenizer";
}

inline std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A tokenizer.json whose top-level keys are replaced by those of `overrides` (a JSON object
/// text, one key per line as `"key": value`): the variants of tests/data/tokenizer/variants/*.json.
/// The base files are written one top-level key per line (make_tokenizer_models.py), so a line is
/// swapped for another; tokenize_reference.mjs --override does the same with JSON.parse.
inline std::string with_overrides(const std::string& base, const std::string& overrides) {
  std::vector<std::string> lines;
  std::istringstream in(base);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::istringstream ov(overrides);
  for (std::string line; std::getline(ov, line);) {
    const auto colon = line.find("\":");
    if (line.empty() || line[0] != '"' || colon == std::string::npos) continue;
    const std::string key = line.substr(0, colon + 2);
    std::string value = line;
    while (!value.empty() && (value.back() == ',' || value.back() == '\r')) value.pop_back();
    bool replaced = false;
    for (std::string& l : lines) {
      if (l.rfind(key, 0) == 0) {
        l = value + (l.back() == ',' ? "," : "");
        replaced = true;
      }
    }
    const std::string what = "override key not in the base file: " + key;
    REQUIRE_MESSAGE(replaced, what);
  }
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

/// Byte offsets to the code point offsets that the Hugging Face bindings report.
inline Offsets to_char_offsets(std::string_view text, const Offsets& bytes) {
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
  std::uint64_t bytes = 0;
  double seconds = 0;
};

inline void report(const Parity& p, std::string_view name, const std::vector<std::string>& mismatches) {
  for (const auto& m : mismatches) MESSAGE(m);
  MESSAGE(fmt::format("{}: {} of {} identical", name, p.same, p.total));
}

/// Compares a --full/--no-special reference file: {"text", "ids", "type_ids", "offsets"} lines.
inline Parity check_full(const Tokenizer& t, const fs::path& file, bool add_special_tokens = true) {
  std::ifstream in(file, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), file.string());
  simdjson::dom::parser parser;
  Parity p;
  std::vector<std::string> mismatches;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    simdjson::dom::element doc = parser.parse(line);
    const std::string_view text = doc["text"].get_string();
    std::vector<std::int32_t> want_ids, want_types;
    Offsets want_offsets;
    for (std::int64_t id : doc["ids"].get_array()) want_ids.push_back(static_cast<std::int32_t>(id));
    for (std::int64_t id : doc["type_ids"].get_array()) want_types.push_back(static_cast<std::int32_t>(id));
    for (simdjson::dom::array o : doc["offsets"].get_array()) {
      want_offsets.emplace_back(static_cast<std::uint32_t>(std::int64_t(o.at(0))),
                                static_cast<std::uint32_t>(std::int64_t(o.at(1))));
    }
    const Encoding enc = t.encode(text, add_special_tokens);
    ++p.total;
    const Offsets got_offsets = to_char_offsets(text, enc.offsets);
    if (enc.ids == want_ids && enc.type_ids == want_types && got_offsets == want_offsets) {
      ++p.same;
    } else if (mismatches.size() < 6) {
      mismatches.push_back(
          fmt::format("{:?}\n  expected ids {}\n  got          {}\n  expected offsets {}\n  got "
                      "     offsets {}",
                      std::string(text), fmt::join(want_ids, " "), fmt::join(enc.ids, " "), want_offsets, got_offsets));
    }
  }
  report(p, file.filename().string(), mismatches);
  return p;
}

/// Compares an --ids-only reference file (one line of space-separated ids per corpus line) with
/// the encodings of tests/data/tokenizer/corpus.jsonl, and times the encoding.
inline Parity check_ids(const Tokenizer& t, const fs::path& ids_file) {
  std::ifstream corpus(tokenizer_data_dir() / "corpus.jsonl", std::ios::binary);
  std::ifstream ids(ids_file, std::ios::binary);
  REQUIRE_MESSAGE(corpus.good(), "corpus.jsonl");
  REQUIRE_MESSAGE(ids.good(), ids_file.string());
  simdjson::dom::parser parser;
  Parity p;
  std::vector<std::string> mismatches;
  std::string line, id_line;
  std::vector<std::int32_t> want;
  while (std::getline(corpus, line)) {
    if (line.empty()) continue;
    REQUIRE_MESSAGE(std::getline(ids, id_line), "the ids file has fewer lines than the corpus");
    const std::string_view text = parser.parse(line)["text"].get_string();
    want.clear();
    std::istringstream ls(id_line);
    for (std::int32_t id; ls >> id;) want.push_back(id);
    const auto t0 = std::chrono::steady_clock::now();
    const Encoding enc = t.encode(text);
    p.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    p.tokens += enc.ids.size();
    p.bytes += text.size();
    ++p.total;
    if (enc.ids == want) {
      ++p.same;
    } else if (mismatches.size() < 8) {
      mismatches.push_back(fmt::format("line {}: {:?}\n  expected {}\n  got      {}", p.total, std::string(text),
                                       fmt::join(want, " "), fmt::join(enc.ids, " ")));
    }
  }
  report(p, ids_file.filename().string(), mismatches);
  MESSAGE(fmt::format("{} tokens, {:.2f} M tokens/s, {:.1f} MB/s (single thread, inside the test)", p.tokens,
                      p.tokens / p.seconds / 1e6, p.bytes / p.seconds / 1e6));
  return p;
}

}  // namespace sluice::test
