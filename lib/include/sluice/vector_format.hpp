#pragma once
/// How embeddings are written to JSONL output (`--dim`, `--output-type`, `--output-encoding`).
/// Plain values and pure functions. Thread: any.

#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice {

/// The element type written for each embedding.
enum class VectorType : std::uint8_t {
  float32,  ///< as computed
  float16,  ///< IEEE binary16, rounded to nearest (ties to even); JSON numbers are that half's value
  int8,     ///< round(127 x clamp(v, -1, 1)): for normalised embeddings, whose components lie in [-1, 1]
  binary,   ///< one bit per dimension, 1 when v > 0, packed 8 to a byte, first dimension in the high
            ///< bit (numpy.packbits, sentence-transformers' "ubinary"); the last byte is zero-padded
};

/// How the vector is spelled in the JSON line.
enum class VectorEncoding : std::uint8_t {
  json,    ///< an array of numbers (float types) or integers (int8: -127..127; binary: bytes 0..255)
  base64,  ///< a string: standard base64 (with padding) of the little-endian bytes of the elements
};

struct VectorFormat {
  VectorType type = VectorType::float32;
  VectorEncoding encoding = VectorEncoding::json;
};

/// "float32", "float16", "int8", "binary" / "json", "base64".
std::string_view to_string(VectorType type) noexcept;
std::string_view to_string(VectorEncoding encoding) noexcept;
std::optional<VectorType> parse_vector_type(std::string_view name) noexcept;
std::optional<VectorEncoding> parse_vector_encoding(std::string_view name) noexcept;

}  // namespace sluice
