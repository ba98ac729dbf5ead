#pragma once
/// Error codes shared by every part of sluice.
///
/// One table, SLUICE_ERROR_MAP, generates the enum, its names and its default messages
/// (libuv's UV_ERRNO_MAP). Hot paths return `Result<T>`; setup code throws `sluice::Error`.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace sluice {

// X(name, default message)
#define SLUICE_ERROR_MAP(X)                                     \
  X(invalid_json, "invalid JSON")                               \
  X(invalid_utf8, "invalid UTF-8")                              \
  X(not_an_object, "record is not a JSON object")               \
  X(missing_field, "field is missing")                          \
  X(field_not_string, "field is not a string")                  \
  X(record_too_large, "record exceeds the size limit")          \
  X(output_field_exists, "record already has the output field") \
  X(empty_text, "text is empty")                                \
  X(text_too_long, "text is longer than the model accepts")      \
  X(tokenizer_error, "tokenizer failed")                        \
  X(model_error, "model inference failed")                      \
  X(invalid_model, "model folder is invalid")                   \
  X(io_error, "input/output error")                             \
  X(invalid_argument, "invalid argument")                       \
  X(cancelled, "cancelled")                                     \
  X(internal, "internal error")                                 \
  X(invalid_id, "the id field is not a string or an integer")   \
  X(duplicate_id, "an earlier record of this run has the same id") \
  X(store_rejected, "the store refused the record")              \
  X(backend_unavailable, "the model backend cannot be reached")

enum class ErrorCode : std::uint8_t {
#define SLUICE_ERROR_ENUM(name, msg) name,
  SLUICE_ERROR_MAP(SLUICE_ERROR_ENUM)
#undef SLUICE_ERROR_ENUM
};

/// The code's stable name, e.g. "invalid_json" (used in JSON events and dead-letter lines).
std::string_view error_name(ErrorCode code) noexcept;
/// The code's default one-line message.
std::string_view error_message(ErrorCode code) noexcept;
/// Parses a name produced by error_name(); returns false for an unknown name.
bool error_from_name(std::string_view name, ErrorCode& out) noexcept;

/// Where in the input something happened. `line` is 1-based; `offset` is the byte offset of
/// the line's first byte in the input.
struct InputLocation {
  std::string file;
  std::uint64_t line = 0;
  std::uint64_t offset = 0;

  bool operator==(const InputLocation&) const = default;
};

/// An error as data: a code, a message for the user (says what and where, and what to do)
/// and optional detail for debugging. Every type in this header is a plain value. Thread: any.
struct ErrorInfo {
  ErrorCode code = ErrorCode::internal;
  std::string message;
  std::string field;  ///< the JSON field concerned, empty when none
  std::string detail;
};

/// Thrown by setup code (loading a model, opening files, parsing options).
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, std::string message, std::string detail = {})
      : std::runtime_error(message), code_(code), detail_(std::move(detail)) {}

  ErrorCode code() const noexcept { return code_; }
  const std::string& detail() const noexcept { return detail_; }

 private:
  ErrorCode code_;
  std::string detail_;
};

/// A value or an error, for hot paths that must not throw.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT: implicit by design
  Result(ErrorInfo error) : v_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const ErrorInfo& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, ErrorInfo> v_;
};

}  // namespace sluice
