#include <doctest/doctest.h>

#include <sluice/error.hpp>

using sluice::ErrorCode;

TEST_CASE("error names round-trip through the table") {
  for (auto code : {ErrorCode::invalid_json, ErrorCode::missing_field, ErrorCode::model_error, ErrorCode::internal}) {
    ErrorCode parsed{};
    REQUIRE(sluice::error_from_name(sluice::error_name(code), parsed));
    CHECK(parsed == code);
    CHECK_FALSE(sluice::error_message(code).empty());
  }
  CHECK(sluice::error_name(ErrorCode::missing_field) == "missing_field");
  ErrorCode parsed{};
  CHECK_FALSE(sluice::error_from_name("no_such_error", parsed));
}

TEST_CASE("Result holds a value or an error") {
  sluice::Result<int> good = 7;
  CHECK(good.ok());
  CHECK(good.value() == 7);
  sluice::Result<int> bad = sluice::ErrorInfo{ErrorCode::missing_field, "field \"text\" is missing", "text", {}};
  CHECK_FALSE(bad.ok());
  CHECK(bad.error().field == "text");
}
