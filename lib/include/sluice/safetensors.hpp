#pragma once
/// Read-only access to a `.safetensors` file (Hugging Face's weight format): an 8-byte
/// little-endian header length, a JSON header naming each tensor's dtype, shape and byte range,
/// then the raw little-endian tensor bytes. The file is memory-mapped; tensors are views into
/// the mapping. No libtorch here: the model code converts the bytes itself.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

/// The element types the safetensors format names ("F32", "BF16", ...).
enum class DType : std::uint8_t {
  boolean,  ///< "BOOL"
  u8,       ///< "U8"
  i8,       ///< "I8"
  f8_e5m2,  ///< "F8_E5M2"
  f8_e4m3,  ///< "F8_E4M3"
  i16,      ///< "I16"
  u16,      ///< "U16"
  f16,      ///< "F16"
  bf16,     ///< "BF16"
  i32,      ///< "I32"
  u32,      ///< "U32"
  f32,      ///< "F32"
  f64,      ///< "F64"
  i64,      ///< "I64"
  u64,      ///< "U64"
};

/// The dtype's name in the file format, e.g. "F32".
std::string_view dtype_name(DType dtype) noexcept;
/// Bytes per element.
std::size_t dtype_size(DType dtype) noexcept;
/// Parses a name produced by dtype_name(); returns false for an unknown name.
bool dtype_from_name(std::string_view name, DType& out) noexcept;

/// One tensor of a safetensors file.
struct TensorView {
  std::string name;
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;      ///< empty for a scalar
  std::span<const std::byte> data;      ///< the raw little-endian bytes, inside the mapping
  std::uint64_t offset = 0;             ///< where `data` starts, from the start of the data area

  /// Number of elements (the product of `shape`; 1 for a scalar, 0 when a dimension is 0).
  /// Never overflows: the views SafetensorsFile hands out have counts below 2^63; for a
  /// hand-made shape beyond that it returns INT64_MAX.
  std::int64_t numel() const noexcept;
  /// The shape as text, e.g. "[384, 1536]", for messages.
  std::string shape_string() const;
};

/// A memory-mapped, validated safetensors file. Move-only; the views it hands out live as long
/// as the object. Thread: any (const after open).
class SafetensorsFile {
 public:
  /// Maps and validates the file: the header length lies within the file, the header is a JSON
  /// object whose entries (besides an optional "__metadata__" object of strings) each have a
  /// known "dtype", a "shape" of non-negative integers whose product (taken over the non-zero
  /// dimensions) stays below 2^63 and whose byte size fits 64 bits, and "data_offsets"
  /// [begin, end] whose size equals the shape's element count times the dtype size, and the tensors cover the data
  /// area exactly, in order, without overlap or gaps.
  /// Throws sluice::Error (invalid_model): "<path>: tensor \"<name>\": <what is wrong>", or
  /// "<path>: <what is wrong>" for the file as a whole; io_error when it cannot be opened.
  static SafetensorsFile open(const std::filesystem::path& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::filesystem::path& path() const noexcept { return path_; }
  /// Every tensor, ordered by position in the file.
  const std::vector<TensorView>& tensors() const noexcept { return tensors_; }
  /// The tensor named `name`, or nullptr.
  const TensorView* find(std::string_view name) const noexcept;
  /// The "__metadata__" entries (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  /// Size of the whole file in bytes.
  std::uint64_t file_size() const noexcept { return size_; }

 private:
  SafetensorsFile() = default;
  void unmap() noexcept;

  std::filesystem::path path_;
  const std::byte* map_ = nullptr;
  std::uint64_t size_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace sluice
