// Fuzz target: the safetensors reader (SafetensorsFile::open), on arbitrary bytes as a file.
//
// Each input is tried as two files (both through a memfd, opened by its /proc path):
//   1. the input's bytes as they are;
//   2. a well-framed file: the 8-byte little-endian length of the input's bytes up to the first
//      NUL, those bytes as the header, and the bytes after that NUL as the data area. Mutations
//      of the JSON header then reach the validation code instead of the length check.
// Invariants checked:
// - open() either throws sluice::Error with code invalid_model, or returns a listing where
//   every tensor's span lies inside the data area, at data start + offset, and holds the file's
//   bytes there; the spans tile the data area in order; each span's size is numel() times the
//   dtype size (the product recomputed here in 128 bits); names are unique and find() returns
//   each; the header was a JSON object (independent reader) with one member per tensor besides
//   "__metadata__".
// Any other exception, or a crash, is a finding.

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <string_view>

#include <sluice/error.hpp>
#include <sluice/safetensors.hpp>

#include "fuzz_check.hpp"
#include "json_check.hpp"

using namespace sluice;
using namespace sluice::fuzz;

namespace {

struct MemFile {
  int fd = -1;
  std::string path;
  MemFile() {
    fd = ::memfd_create("fuzz-safetensors", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0, "memfd_create failed: %s", std::strerror(errno));
    path = "/proc/self/fd/" + std::to_string(fd);
  }
  void set(std::string_view bytes) {
    FUZZ_CHECK(::ftruncate(fd, 0) == 0, "ftruncate: %s", std::strerror(errno));
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
      FUZZ_CHECK(n > 0, "pwrite: %s", std::strerror(errno));
      done += static_cast<std::size_t>(n);
    }
  }
};

std::uint64_t le64(std::string_view b) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[static_cast<std::size_t>(i)]);
  return v;
}

void check_file(MemFile& mem, std::string_view bytes) {
  mem.set(bytes);
  SafetensorsFile file = [&]() -> SafetensorsFile {
    try {
      return SafetensorsFile::open(mem.path);
    } catch (const Error& e) {
      FUZZ_CHECK(e.code() == ErrorCode::invalid_model, "error code %s: %s", error_name(e.code()).data(), e.what());
      FUZZ_CHECK(std::string_view(e.what()).starts_with(mem.path + ": "), "message does not name the file: %s",
                 e.what());
      throw;
    }
  }();

  FUZZ_CHECK(bytes.size() >= 8 && file.file_size() == bytes.size(), "file_size %llu, file %zu",
             static_cast<unsigned long long>(file.file_size()), bytes.size());
  const std::uint64_t header_len = le64(bytes);
  FUZZ_CHECK(header_len <= bytes.size() - 8, "header length %llu past the end",
             static_cast<unsigned long long>(header_len));
  const std::uint64_t data_start = 8 + header_len;
  const std::uint64_t data_size = bytes.size() - data_start;

  const JsonDoc doc = read_json(bytes.substr(8, header_len));
  FUZZ_CHECK(doc.valid && doc.root == Kind::object, "accepted a header that is not a JSON object: %s",
             printable(bytes.substr(8, header_len)).c_str());
  std::size_t entries = 0;
  for (const Member& m : doc.members) entries += m.key != "__metadata__";
  FUZZ_CHECK(entries == file.tensors().size(), "%zu tensors listed, the header has %zu entries", file.tensors().size(),
             entries);

  std::uint64_t expected = 0;
  std::set<std::string_view> names;
  for (const TensorView& t : file.tensors()) {
    FUZZ_CHECK(names.insert(t.name).second, "tensor \"%s\" listed twice", printable(t.name).c_str());
    FUZZ_CHECK(file.find(t.name) == &t, "find(\"%s\") does not return it", printable(t.name).c_str());
    FUZZ_CHECK(t.offset == expected, "tensor \"%s\" at %llu, the previous one ends at %llu", printable(t.name).c_str(),
               static_cast<unsigned long long>(t.offset), static_cast<unsigned long long>(expected));
    FUZZ_CHECK(t.offset <= data_size && t.data.size() <= data_size - t.offset, "tensor \"%s\" runs past the data",
               printable(t.name).c_str());
    if (!t.data.empty()) {
      FUZZ_CHECK(std::memcmp(t.data.data(), bytes.data() + data_start + t.offset, t.data.size()) == 0,
                 "tensor \"%s\": its bytes are not the file's at data start + offset", printable(t.name).c_str());
    }
    unsigned __int128 count = 1;
    bool zero = false;
    for (std::int64_t d : t.shape) {
      FUZZ_CHECK(d >= 0, "negative dimension in \"%s\"", printable(t.name).c_str());
      if (d == 0) zero = true;
      if (!zero) {
        count *= static_cast<std::uint64_t>(d);
        FUZZ_CHECK(count <= UINT64_MAX, "shape of \"%s\" overflows", printable(t.name).c_str());
      }
    }
    if (zero) count = 0;
    FUZZ_CHECK(count * dtype_size(t.dtype) == t.data.size(), "tensor \"%s\": %s of %s is not %zu bytes",
               printable(t.name).c_str(), t.shape_string().c_str(), dtype_name(t.dtype).data(), t.data.size());
    FUZZ_CHECK(static_cast<unsigned __int128>(t.numel()) == count, "numel() of %s is %lld", t.shape_string().c_str(),
               static_cast<long long>(t.numel()));
    expected = t.offset + t.data.size();
  }
  FUZZ_CHECK(expected == data_size, "tensors cover %llu of %llu data bytes", static_cast<unsigned long long>(expected),
             static_cast<unsigned long long>(data_size));
}

void try_file(MemFile& mem, std::string_view bytes) {
  try {
    check_file(mem, bytes);
  } catch (const Error&) {
    // Refused cleanly (the code and message were checked in check_file).
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static MemFile mem;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  try_file(mem, in);

  const std::size_t nul = in.find('\0');
  const std::string_view header = in.substr(0, nul);
  const std::string_view rest = nul == std::string_view::npos ? std::string_view() : in.substr(nul + 1);
  std::string framed(8, '\0');
  for (int i = 0; i < 8; ++i)
    framed[static_cast<std::size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  framed += header;
  framed += rest;
  try_file(mem, framed);
  return 0;
}
