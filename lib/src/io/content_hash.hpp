#pragma once
// A 64-bit hash of a byte stream that does not depend on how the stream is cut into pieces:
// checkpoints record the hash of the input, output and dead-letter bytes before their
// positions, and a resume hashes the same bytes again, in other pieces, to check that nothing
// before the positions changed. Not cryptographic: it detects edits and damage, not an
// adversary who recomputes it. About 5 GB/s on one core. Thread: any (a value type).

#include <cstdint>
#include <string>
#include <string_view>

namespace sluice {

class ContentHash {
 public:
  /// Adds bytes to the stream.
  void update(std::string_view bytes) noexcept;
  /// The hash of every byte added so far (their count included).
  std::uint64_t digest() const noexcept;
  /// digest() as 16 lower-case hex digits, the checkpoint's form.
  std::string hex() const;
  /// Bytes added so far, and how many of them were '\n'.
  std::uint64_t length() const noexcept { return length_; }
  std::uint64_t newlines() const noexcept { return newlines_; }
  /// The last byte added (0 when none).
  char last_byte() const noexcept { return last_; }

 private:
  void mix(std::uint64_t word) noexcept;

  std::uint64_t state_ = 0x9e3779b97f4a7c15ull;
  std::uint64_t length_ = 0;
  std::uint64_t newlines_ = 0;
  std::uint64_t carry_ = 0;  // bytes of an unfinished 8-byte word, little-endian
  unsigned carry_bytes_ = 0;
  char last_ = 0;
};

/// Adds the bytes of `path` from hash.length() up to `end` to `hash`, read with pread. Returns
/// an empty string, or a message naming the path when it cannot be read or is shorter than
/// `end`.
std::string hash_file_to(const std::string& path, std::uint64_t end, ContentHash& hash);
/// The same through an open descriptor (left open, its position untouched); `name` is used
/// in messages.
std::string hash_fd_to(int fd, const std::string& name, std::uint64_t end, ContentHash& hash);

}  // namespace sluice
