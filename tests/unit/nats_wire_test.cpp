// The scale-out wire format (lib/src/backend/nats_common.hpp): a batch and an answer survive the
// trip exactly, and a malformed message is an error, never a crash or a wrong batch.

#include <doctest/doctest.h>

#include <cstring>
#include <random>

#include "backend/nats_common.hpp"

using namespace sluice;
using namespace sluice::nats_wire;

namespace {

TokenBatch ragged(std::uint32_t rows, std::uint32_t seq, bool types, bool prompts, std::uint32_t seed) {
  std::mt19937 rng(seed);
  TokenBatch b;
  b.batch = rows;
  b.seq_len = seq;
  const std::int64_t pad = 1;
  b.ids.assign(std::size_t{rows} * seq, pad);
  b.attention_mask.assign(b.ids.size(), 0);
  b.type_ids.assign(b.ids.size(), 0);
  for (std::uint32_t r = 0; r < rows; ++r) {
    const std::uint32_t len = r == 0 ? seq : 1 + rng() % seq;  // one row fills the batch
    for (std::uint32_t c = 0; c < len; ++c) {
      b.ids[std::size_t{r} * seq + c] = static_cast<std::int64_t>(rng() % 250000);
      b.attention_mask[std::size_t{r} * seq + c] = 1;
      if (types) b.type_ids[std::size_t{r} * seq + c] = static_cast<std::int64_t>(rng() % 2);
    }
    if (prompts) b.prompt_tokens.push_back(rng() % len);
  }
  return b;
}

}  // namespace

TEST_CASE("a batch survives the wire exactly") {
  for (bool types : {false, true}) {
    for (bool prompts : {false, true}) {
      for (std::uint32_t rows : {1u, 3u, 64u}) {
        const TokenBatch b = ragged(rows, 37, types, prompts, rows * 7 + types + 2 * prompts);
        const std::string wire = encode_batch(b);
        CHECK(wire.size() <= batch_bytes_bound(b.batch, b.seq_len));
        const TokenBatch back = decode_batch(wire);
        CHECK(back.batch == b.batch);
        CHECK(back.seq_len == b.seq_len);
        CHECK(back.ids == b.ids);
        CHECK(back.attention_mask == b.attention_mask);
        CHECK(back.type_ids == b.type_ids);
        CHECK(back.prompt_tokens == b.prompt_tokens);
      }
    }
  }
}

TEST_CASE("vectors and errors survive the wire exactly") {
  std::vector<float> v = {0.0f, -0.0f, 1e-45f, -3.4028235e38f, 0.1f, 1.0f / 3};
  const Answer a = decode_answer(encode_vectors(2, 3, v.data()));
  CHECK_FALSE(a.error);
  CHECK(a.rows == 2);
  CHECK(a.dims == 3);
  REQUIRE(a.values.size() == v.size());
  CHECK(std::memcmp(a.values.data(), v.data(), v.size() * sizeof(float)) == 0);  // every bit, -0 too

  const Answer e = decode_answer(encode_error(ErrorInfo{ErrorCode::text_too_long, "too long: \xE2\x9C\x93", {}, {}}));
  REQUIRE(e.error);
  CHECK(e.error->code == ErrorCode::text_too_long);
  CHECK(e.error->message == "too long: \xE2\x9C\x93");
}

TEST_CASE("a malformed message is an error") {
  const std::string wire = encode_batch(ragged(4, 9, true, true, 3));
  // Every cut short of the whole, and bytes past the end.
  for (std::size_t n = 0; n < wire.size(); ++n) CHECK_THROWS_AS(decode_batch(wire.substr(0, n)), Error);
  CHECK_THROWS_AS(decode_batch(wire + "x"), Error);
  // Another format, a row longer than the batch, a row of no tokens, a shape of no rows.
  std::string bad = wire;
  bad[0] = 'X';
  CHECK_THROWS_AS(decode_batch(bad), Error);
  bad = wire;
  bad[24] = 10;  // the first row's length: seq_len is 9
  CHECK_THROWS_AS(decode_batch(bad), Error);
  bad = wire;
  bad[24] = 0;
  CHECK_THROWS_AS(decode_batch(bad), Error);
  bad = wire;
  std::memset(&bad[4], 0, 4);
  CHECK_THROWS_AS(decode_batch(bad), Error);
  // A shape whose size would overflow.
  bad = wire;
  std::memset(&bad[4], 0xFF, 8);
  CHECK_THROWS_AS(decode_batch(bad), Error);

  const std::string answer = encode_vectors(1, 2, std::vector<float>{1, 2}.data());
  for (std::size_t n = 0; n < answer.size(); ++n) CHECK_THROWS_AS(decode_answer(answer.substr(0, n)), Error);
  CHECK_THROWS_AS(decode_answer(answer + "x"), Error);
  std::string status = answer;
  status[4] = 7;
  CHECK_THROWS_AS(decode_answer(status), Error);
}

TEST_CASE("passwords are cut from URLs at the last @") {
  CHECK(redact_nats_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222");
  CHECK(redact_nats_url("nats://u:p@h:1") == "nats://***@h:1");
  CHECK(redact_nats_url("nats://u:p@ss@h:1") == "nats://***@h:1");
  CHECK(redact_nats_url("nats://a:b@h1:1,nats://h2:2,tls://c:d@e@h3:3") == "nats://***@h1:1,nats://h2:2,tls://***@h3:3");
  CHECK(redact_nats_url("token@h:1") == "***@h:1");
}

TEST_CASE("subject tokens have no wildcards or separators") {
  CHECK(subject_token("host-1_a") == "host-1_a");
  CHECK(subject_token("a.b*c>d e") == "a_b_c_d_e");
  CHECK(subject_token("") == "_");
}
