#pragma once
// For the model tests: where meson's test setup puts the generated test model folders
// (tests/meson.build), and the cosine the comparisons use.

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
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

/// Cosine similarity of two vectors of `n` floats, accumulated in double.
inline double cosine(const float* a, const float* b, std::size_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

}  // namespace sluice::test
