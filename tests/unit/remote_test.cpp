// The remote backend's pure parts (lib/src/backend/remote_parse.hpp, sluice/remote.hpp): the
// rate-limit headers' durations, Retry-After, URL redaction and the estimating tokenizer.

#include <doctest/doctest.h>

#include <sluice/remote.hpp>

#include "backend/remote_parse.hpp"

using namespace sluice;

TEST_CASE("x-ratelimit-reset durations, as OpenAI spells them") {
  CHECK(remote_parse::duration("1s") == doctest::Approx(1));
  CHECK(remote_parse::duration("20ms") == doctest::Approx(0.02));
  CHECK(remote_parse::duration("6m0s") == doctest::Approx(360));
  CHECK(remote_parse::duration("1h2m3.5s") == doctest::Approx(3723.5));
  CHECK(remote_parse::duration("2.5") == doctest::Approx(2.5));
  CHECK(remote_parse::duration("0s") == doctest::Approx(0));
  for (const char* bad : {"", "s", "1x", "-1s", "1s2", "abc", "1 s"}) {
    CAPTURE(bad);
    CHECK_FALSE(remote_parse::duration(bad).has_value());
  }
}

TEST_CASE("Retry-After: seconds or an HTTP date") {
  const double now = 1445412480;  // Wed, 21 Oct 2015 07:28:00 GMT
  CHECK(remote_parse::retry_after("1", now) == doctest::Approx(1));
  CHECK(remote_parse::retry_after("120", now) == doctest::Approx(120));
  CHECK(remote_parse::retry_after("0.5", now) == doctest::Approx(0.5));
  CHECK(remote_parse::retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now) == doctest::Approx(30));
  // A date already past: no wait, not a negative one.
  CHECK(remote_parse::retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now) == doctest::Approx(0));
  for (const char* bad : {"", "-3", "soon", "Wed, 21 Oct 2015", "1s"}) {
    CAPTURE(bad);
    CHECK_FALSE(remote_parse::retry_after(bad, now).has_value());
  }
}

TEST_CASE("a password in the URL is never shown") {
  CHECK(redact_url("https://user:pw@api.example.com/v1") == "https://***@api.example.com/v1");
  CHECK(redact_url("http://127.0.0.1:8080/v1") == "http://127.0.0.1:8080/v1");
  CHECK(redact_url("https://api.example.com/v1/x@y") == "https://api.example.com/v1/x@y");
  CHECK(redact_url("https://a:b@c@host/v1") == "https://***@host/v1");
}

TEST_CASE("the estimating tokenizer counts a token per N bytes and never truncates") {
  auto t = make_estimating_tokenizer(3.0);
  CHECK(t->count_tokens("") == 0);
  CHECK(t->count_tokens("ab") == 1);
  CHECK(t->count_tokens("abc") == 1);
  CHECK(t->count_tokens("abcd") == 2);
  const std::string long_text(100000, 'x');
  t->set_max_length(16);
  const Encoding e = t->encode(long_text);
  CHECK(e.ids.size() == 33334);
  CHECK_FALSE(e.truncated());
  CHECK(e.offsets.back().second == long_text.size());
  CHECK_FALSE(t->max_length().has_value());
  CHECK(make_estimating_tokenizer(4.0)->count_tokens("abcdefgh") == 2);
}
