// Fuzz target: checkpoint_from_json / checkpoint_to_json (lib/src/engine/checkpoint.hpp).
//
// Each input is used twice:
//   1. As checkpoint text: checkpoint_from_json() returns a state or an invalid_argument error
//      with a message, never anything else. Its answer is compared with an independent JSON
//      reader (json_check.hpp): accepted exactly when the text is one JSON object whose first
//      occurrence of every field has the right type ("version" 2, counters plain non-negative
//      integers, names strings, "finished" a boolean), and then with the same values. Texts
//      where simdjson's own limits decide (depth, lone surrogate escapes, numbers out of range)
//      are only checked in the accepting direction.
//   2. As a state: the bytes are cut into the state's counters and strings (ByteReader);
//      checkpoint_to_json() writes one line of valid JSON that checkpoint_from_json() reads
//      back equal (strings that are not valid UTF-8 come back as valid UTF-8: json_writer
//      replaces ill-formed bytes).
// An accepted state also round-trips through checkpoint_to_json().

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <tuple>

#include "engine/checkpoint.hpp"
#include "io/jsonl_source.hpp"
#include "fuzz_check.hpp"
#include "json_check.hpp"

using namespace sluice;
using namespace sluice::fuzz;

namespace {

// Cuts values off the front of the input (zeros once it runs out).
struct ByteReader {
  std::string_view rest;
  std::uint64_t u64() {
    std::uint64_t v = 0;
    const std::size_t n = std::min<std::size_t>(8, rest.size());
    for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t{static_cast<unsigned char>(rest[i])} << (8 * i);
    rest.remove_prefix(n);
    return v;
  }
  bool boolean() { return (u64() & 1) != 0; }
  // A length byte, then that many bytes.
  std::string str() {
    if (rest.empty()) return {};
    const std::size_t n = std::min<std::size_t>(static_cast<unsigned char>(rest[0]), rest.size() - 1);
    std::string out(rest.substr(1, n));
    rest.remove_prefix(1 + n);
    return out;
  }
};

bool plain_uint(std::string_view raw, std::uint64_t& out) {
  if (raw.empty() || raw.size() > 20) return false;
  if (raw.size() > 1 && raw[0] == '0') return false;
  for (char c : raw) {
    if (c < '0' || c > '9') return false;
  }
  errno = 0;
  out = std::strtoull(std::string(raw).c_str(), nullptr, 10);
  return errno == 0;
}

const Member* first(const JsonDoc& doc, std::string_view key) {
  for (const Member& m : doc.members) {
    if (m.key == key) return &m;
  }
  return nullptr;
}

struct Prediction {
  bool decided = true;
  bool ok = false;
  CheckpointState state;
};

Prediction predict(const JsonDoc& doc) {
  Prediction p;
  if (doc.max_depth > 1000 || doc.lone_surrogate || doc.number_out_of_range) {
    p.decided = false;
    return p;
  }
  if (!doc.utf8_ok || !doc.valid || doc.root != Kind::object) return p;
  auto u64 = [&](std::string_view key, std::uint64_t& out) {
    const Member* m = first(doc, key);
    if (m == nullptr || m->kind != Kind::number) return false;
    if (m->raw == "-0") p.decided = false;  // an integer zero to some parsers, a double to others
    return plain_uint(m->raw, out);
  };
  auto str = [&](std::string_view key, std::string& out) {
    const Member* m = first(doc, key);
    if (m == nullptr || m->kind != Kind::string) return false;
    out = m->value;
    return true;
  };
  CheckpointState& s = p.state;
  std::uint64_t version = 0;
  bool ok = u64("version", version) && str("input", s.input) && u64("input_size", s.input_size) &&
            u64("input_offset", s.input_offset) && u64("input_line", s.input_line) &&
            u64("records_done", s.records_done) && str("output", s.output) && u64("output_offset", s.output_offset) &&
            str("dead_letter", s.dead_letter) && u64("dead_letter_offset", s.dead_letter_offset) &&
            u64("completed", s.completed) && u64("failed", s.failed) && u64("tokens", s.tokens) &&
            u64("truncated", s.truncated) && str("output_hash", s.output_hash) &&
            str("dead_letter_hash", s.dead_letter_hash) && str("fingerprint", s.fingerprint);
  const Member* fin = first(doc, "finished");
  ok = ok && fin != nullptr && fin->kind == Kind::boolean;
  if (ok) s.finished = fin->raw == "true";
  // Optional since version 2: when present, a string.
  if (ok && first(doc, "output_position") != nullptr) ok = str("output_position", s.output_position);
  if (ok && version == 2) {
    // Version 2: the JSONL file's hash, read as the JSONL source's position.
    std::string hash;
    ok = str("input_hash", hash);
    if (ok && !hash.empty()) s.input_position = jsonl_position(s.input_offset, s.input_line, hash);
  } else if (ok) {
    ok = str("input_position", s.input_position);
  }
  s.version = CheckpointState::kVersion;
  p.ok = ok && (version == CheckpointState::kVersion || version == 2);
  return p;
}

void check_round_trip(const CheckpointState& s, const char* what) {
  const std::string text = checkpoint_to_json(s);
  FUZZ_CHECK(!text.empty() && text.back() == '\n' && text.find('\n') == text.size() - 1,
             "%s: checkpoint_to_json is not one line", what);
  const JsonDoc doc = read_json(std::string_view(text).substr(0, text.size() - 1));
  FUZZ_CHECK(doc.valid && doc.utf8_ok && doc.root == Kind::object, "%s: checkpoint_to_json wrote invalid JSON: %s",
             what, printable(text, 600).c_str());
  auto back = checkpoint_from_json(text);
  FUZZ_CHECK(back.ok(), "%s: checkpoint written cannot be read back (%s): %s", what,
             back.ok() ? "" : back.error().message.c_str(), printable(text, 600).c_str());
  CheckpointState want = s;
  const CheckpointState& got = back.value();
  // Strings that are not valid UTF-8 are written with U+FFFD in place of ill-formed bytes.
  for (auto [field, in, out] : {std::tuple{"input", &s.input, &got.input}, std::tuple{"output", &s.output, &got.output},
                                std::tuple{"dead_letter", &s.dead_letter, &got.dead_letter},
                                std::tuple{"input_position", &s.input_position, &got.input_position},
                                std::tuple{"output_position", &s.output_position, &got.output_position},
                                std::tuple{"output_hash", &s.output_hash, &got.output_hash},
                                std::tuple{"dead_letter_hash", &s.dead_letter_hash, &got.dead_letter_hash},
                                std::tuple{"fingerprint", &s.fingerprint, &got.fingerprint}}) {
    FUZZ_CHECK(is_utf8(*out), "%s: %s read back is not valid UTF-8", what, field);
    if (is_utf8(*in)) {
      FUZZ_CHECK(*in == *out, "%s: %s \"%s\" read back as \"%s\"", what, field, printable(*in).c_str(),
                 printable(*out).c_str());
    }
  }
  want.input = got.input;
  want.output = got.output;
  want.dead_letter = got.dead_letter;
  want.input_position = got.input_position;
  want.output_position = got.output_position;
  want.output_hash = got.output_hash;
  want.dead_letter_hash = got.dead_letter_hash;
  want.fingerprint = got.fingerprint;
  FUZZ_CHECK(got == want, "%s: the state read back differs from the one written: %s", what,
             printable(text, 600).c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  // 1. The bytes as a checkpoint file's text.
  auto r = checkpoint_from_json(in);
  const JsonDoc doc = read_json(in);
  const Prediction p = predict(doc);
  if (r.ok()) {
    FUZZ_CHECK(p.ok || !p.decided, "accepted a text that is not a valid checkpoint: %s", printable(in).c_str());
    const CheckpointState& s = r.value();
    FUZZ_CHECK(s.version == CheckpointState::kVersion, "version %d", s.version);
    if (p.decided) {
      FUZZ_CHECK(s == p.state, "fields read differ from the text's: %s", printable(in).c_str());
    }
    check_round_trip(s, "accepted text");
  } else {
    FUZZ_CHECK(!p.ok || !p.decided, "refused a valid checkpoint (%s): %s", r.error().message.c_str(),
               printable(in).c_str());
    FUZZ_CHECK(r.error().code == ErrorCode::invalid_argument && !r.error().message.empty(), "error %s \"%s\"",
               error_name(r.error().code).data(), r.error().message.c_str());
  }

  // 2. The bytes as a state.
  ByteReader b{in};
  CheckpointState s;
  s.input_size = b.u64();
  s.input_offset = b.u64();
  s.input_line = b.u64();
  s.records_done = b.u64();
  s.output_offset = b.u64();
  s.dead_letter_offset = b.u64();
  s.completed = b.u64();
  s.failed = b.u64();
  s.tokens = b.u64();
  s.truncated = b.u64();
  s.finished = b.boolean();
  s.input = b.str();
  s.output = b.str();
  s.dead_letter = b.str();
  s.input_position = b.str();
  s.output_position = b.str();
  s.output_hash = b.str();
  s.dead_letter_hash = b.str();
  s.fingerprint = std::string(b.rest);
  check_round_trip(s, "state from bytes");
  return 0;
}
