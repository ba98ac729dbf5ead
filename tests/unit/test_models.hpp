#pragma once
// Where meson's test setup puts the generated test model folders (tests/meson.build).

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>

namespace sluice::test {

/// The safetensors test models (tools/models/make_test_models.py): BUILD/tests/test-models.
inline std::filesystem::path models_root() {
  const char* v = std::getenv("SLUICE_TEST_MODELS");
  REQUIRE_MESSAGE(v != nullptr, "SLUICE_TEST_MODELS is not set (run through meson test)");
  return v;
}

/// The TorchScript folder (tools/models/export_torchscript.py on minilm).
inline std::filesystem::path torchscript_root() {
  const char* v = std::getenv("SLUICE_TEST_TORCHSCRIPT");
  REQUIRE_MESSAGE(v != nullptr, "SLUICE_TEST_TORCHSCRIPT is not set (run through meson test)");
  return v;
}

}  // namespace sluice::test
