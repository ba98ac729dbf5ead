#pragma once
// What the remote backend reads from an API's headers (remote_model.cpp), apart so the unit
// tests can reach it. Thread: any (pure functions).

#include <optional>
#include <string>
#include <string_view>

namespace sluice::remote_parse {

// A duration as OpenAI's x-ratelimit-reset-* headers spell it: "20ms", "1s", "6m0s",
// "1h2m3.5s", or plain seconds ("2.5"). Nothing for anything else.
std::optional<double> duration(std::string_view text);

// Retry-After: delay-seconds, or an HTTP date (IMF-fixdate, "Wed, 21 Oct 2015 07:28:00 GMT"),
// as seconds from `now` (Unix time), never negative. Nothing for anything else.
std::optional<double> retry_after(const std::string& value, double now);

}  // namespace sluice::remote_parse
