#include "io/content_hash.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include <fmt/format.h>

namespace sluice {
namespace {

constexpr std::uint64_t kP1 = 0x9e3779b185ebca87ull;  // xxHash64's primes
constexpr std::uint64_t kP2 = 0xc2b2ae3d27d4eb4full;
constexpr std::uint64_t kP3 = 0x165667b19e3779f9ull;

constexpr std::uint64_t rotl(std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

std::uint64_t load_le64(const char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

}  // namespace

void ContentHash::mix(std::uint64_t word) noexcept {
  // One xxHash64 lane round, then folded into the state.
  std::uint64_t k = rotl(word * kP2, 31) * kP1;
  state_ = rotl(state_ ^ k, 27) * kP1 + kP3;
}

void ContentHash::update(std::string_view bytes) noexcept {
  if (bytes.empty()) return;
  length_ += bytes.size();
  newlines_ += static_cast<std::uint64_t>(std::count(bytes.begin(), bytes.end(), '\n'));
  last_ = bytes.back();
  const char* p = bytes.data();
  std::size_t n = bytes.size();
  while (carry_bytes_ != 0 && n > 0) {  // finish the word a previous piece began
    carry_ |= std::uint64_t{static_cast<unsigned char>(*p)} << (8 * carry_bytes_);
    ++p;
    --n;
    if (++carry_bytes_ == 8) {
      mix(carry_);
      carry_ = 0;
      carry_bytes_ = 0;
    }
  }
  for (; n >= 8; p += 8, n -= 8) mix(load_le64(p));
  for (std::size_t i = 0; i < n; ++i) {
    carry_ |= std::uint64_t{static_cast<unsigned char>(p[i])} << (8 * carry_bytes_);
    ++carry_bytes_;
  }
}

std::uint64_t ContentHash::digest() const noexcept {
  std::uint64_t h = state_;
  if (carry_bytes_ > 0) h = rotl(h ^ (rotl(carry_ * kP2, 31) * kP1), 27) * kP1 + kP3;
  h ^= length_ * kP1;
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  h ^= h >> 32;
  return h;
}

std::string ContentHash::hex() const { return fmt::format("{:016x}", digest()); }

std::string hash_fd_to(int fd, const std::string& name, std::uint64_t end, ContentHash& hash) {
  constexpr std::size_t kBuffer = 1 << 20;
  if (end < hash.length()) {
    return fmt::format("{}: cannot hash back to byte {} from {}", name, end, hash.length());
  }
  std::unique_ptr<char[]> buf;
  while (hash.length() < end) {
    if (!buf) buf = std::make_unique_for_overwrite<char[]>(kBuffer);
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kBuffer, end - hash.length()));
    const ssize_t got = ::pread(fd, buf.get(), want, static_cast<off_t>(hash.length()));
    if (got < 0) {
      if (errno == EINTR) continue;
      return fmt::format("{}: cannot read: {}", name, std::strerror(errno));
    }
    if (got == 0) {
      return fmt::format("{}: {} bytes, fewer than the {} expected", name, hash.length(), end);
    }
    hash.update(std::string_view(buf.get(), static_cast<std::size_t>(got)));
  }
  return {};
}

std::string hash_file_to(const std::string& path, std::uint64_t end, ContentHash& hash) {
  if (end == hash.length()) return {};
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fmt::format("{}: cannot open for reading: {}", path, std::strerror(errno));
  std::string err = hash_fd_to(fd, path, end, hash);
  ::close(fd);
  return err;
}

}  // namespace sluice
