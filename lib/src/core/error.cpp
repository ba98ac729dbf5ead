#include <sluice/error.hpp>

namespace sluice {

std::string_view error_name(ErrorCode code) noexcept {
  switch (code) {
#define SLUICE_ERROR_NAME(name, msg) \
  case ErrorCode::name:              \
    return #name;
    SLUICE_ERROR_MAP(SLUICE_ERROR_NAME)
#undef SLUICE_ERROR_NAME
  }
  return "unknown";
}

std::string_view error_message(ErrorCode code) noexcept {
  switch (code) {
#define SLUICE_ERROR_MSG(name, msg) \
  case ErrorCode::name:             \
    return msg;
    SLUICE_ERROR_MAP(SLUICE_ERROR_MSG)
#undef SLUICE_ERROR_MSG
  }
  return "unknown error";
}

bool error_from_name(std::string_view name, ErrorCode& out) noexcept {
#define SLUICE_ERROR_PARSE(n, msg) \
  if (name == #n) {                \
    out = ErrorCode::n;            \
    return true;                   \
  }
  SLUICE_ERROR_MAP(SLUICE_ERROR_PARSE)
#undef SLUICE_ERROR_PARSE
  return false;
}

}  // namespace sluice
