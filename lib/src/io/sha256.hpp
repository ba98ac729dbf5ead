#pragma once
// SHA-256 (FIPS 180-4), for the code index's file and chunk hashes: content that other tools
// can compute too (`sha256sum`). About 200-400 MB/s on one core. Thread: any (a value type).

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice {

class Sha256 {
 public:
  Sha256() noexcept;
  void update(std::string_view bytes) noexcept;
  /// The digest of every byte added; the object is then spent (call reset() to reuse it).
  std::array<std::uint8_t, 32> digest() noexcept;
  /// digest() as 64 lower-case hex digits.
  std::string hex() noexcept;
  void reset() noexcept;

 private:
  void block(const std::uint8_t* p) noexcept;

  std::array<std::uint32_t, 8> h_{};
  std::array<std::uint8_t, 64> buf_{};
  std::size_t buffered_ = 0;
  std::uint64_t length_ = 0;
};

/// The hex SHA-256 of `bytes`.
std::string sha256_hex(std::string_view bytes);

}  // namespace sluice
