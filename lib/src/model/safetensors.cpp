#include <sluice/safetensors.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <simdjson.h>

#include <sluice/error.hpp>

namespace sluice {
namespace {

struct DTypeEntry {
  DType dtype;
  std::string_view name;
  std::size_t size;
};

constexpr std::array<DTypeEntry, 15> kDTypes{{
    {DType::boolean, "BOOL", 1},
    {DType::u8, "U8", 1},
    {DType::i8, "I8", 1},
    {DType::f8_e5m2, "F8_E5M2", 1},
    {DType::f8_e4m3, "F8_E4M3", 1},
    {DType::i16, "I16", 2},
    {DType::u16, "U16", 2},
    {DType::f16, "F16", 2},
    {DType::bf16, "BF16", 2},
    {DType::i32, "I32", 4},
    {DType::u32, "U32", 4},
    {DType::f32, "F32", 4},
    {DType::f64, "F64", 8},
    {DType::i64, "I64", 8},
    {DType::u64, "U64", 8},
}};

/// The safetensors crate refuses headers above 100 MB; so do we.
constexpr std::uint64_t kMaxHeaderSize = 100'000'000;

[[noreturn]] void fail(const std::filesystem::path& path, std::string_view what) {
  throw Error(ErrorCode::invalid_model, fmt::format("{}: {}", path.string(), what));
}

[[noreturn]] void fail_tensor(const std::filesystem::path& path, std::string_view name, std::string_view what) {
  throw Error(ErrorCode::invalid_model, fmt::format("{}: tensor \"{}\": {}", path.string(), name, what));
}

std::string dtype_list() {
  std::string out;
  for (const auto& e : kDTypes) {
    if (!out.empty()) out += ", ";
    out += e.name;
  }
  return out;
}

/// Closes a file descriptor on scope exit.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::string_view dtype_name(DType dtype) noexcept {
  for (const auto& e : kDTypes) {
    if (e.dtype == dtype) return e.name;
  }
  return "?";
}

std::size_t dtype_size(DType dtype) noexcept {
  for (const auto& e : kDTypes) {
    if (e.dtype == dtype) return e.size;
  }
  return 0;
}

bool dtype_from_name(std::string_view name, DType& out) noexcept {
  for (const auto& e : kDTypes) {
    if (e.name == name) {
      out = e.dtype;
      return true;
    }
  }
  return false;
}

std::int64_t TensorView::numel() const noexcept {
  // SafetensorsFile::open refuses shapes whose count overflows; a hand-made view must not
  // reach undefined behaviour either: 0 if any dimension is 0 (or negative), else saturated.
  for (auto d : shape) {
    if (d <= 0) return 0;
  }
  std::int64_t n = 1;
  for (auto d : shape) {
    if (__builtin_mul_overflow(n, d, &n)) return std::numeric_limits<std::int64_t>::max();
  }
  return n;
}

std::string TensorView::shape_string() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      tensors_(std::move(other.tensors_)),
      index_(std::move(other.index_)),
      metadata_(std::move(other.metadata_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    size_ = std::exchange(other.size_, 0);
    tensors_ = std::move(other.tensors_);
    index_ = std::move(other.index_);
    metadata_ = std::move(other.metadata_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

void SafetensorsFile::unmap() noexcept {
  if (map_ != nullptr) {
    ::munmap(const_cast<std::byte*>(map_), size_);
    map_ = nullptr;
  }
}

const TensorView* SafetensorsFile::find(std::string_view name) const noexcept {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile file;
  file.path_ = path;

  FdGuard fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (fd.fd < 0) {
    throw Error(ErrorCode::io_error, fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) {
    throw Error(ErrorCode::io_error, fmt::format("{}: cannot stat: {}", path.string(), std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size < 8) {
    fail(path, fmt::format("the file is {} bytes long, too short for the 8-byte header length", size));
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.fd, 0);
  if (map == MAP_FAILED) {
    throw Error(ErrorCode::io_error, fmt::format("{}: cannot map: {}", path.string(), std::strerror(errno)));
  }
  file.map_ = static_cast<const std::byte*>(map);
  file.size_ = size;

  // From here on, `file`'s destructor unmaps if validation throws.
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | std::to_integer<std::uint64_t>(file.map_[i]);
  if (header_len > size - 8) {
    fail(path, fmt::format("the header length {} runs past the end of the file ({} bytes)", header_len, size));
  }
  if (header_len > kMaxHeaderSize) {
    fail(path, fmt::format("the header length {} exceeds the limit of {} bytes", header_len, kMaxHeaderSize));
  }
  if (header_len < 2) fail(path, fmt::format("the header is {} bytes long, too short for a JSON object", header_len));
  const char* header = reinterpret_cast<const char*>(file.map_ + 8);
  if (header[0] != '{') fail(path, "the header does not start with '{' (not a safetensors file?)");

  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (auto err = parser.parse(header, header_len).get(doc); err) {
    fail(path, fmt::format("the header is not valid JSON: {}", simdjson::error_message(err)));
  }
  simdjson::dom::object root;
  if (doc.get_object().get(root)) fail(path, "the header is not a JSON object");

  const std::uint64_t data_start = 8 + header_len;
  const std::uint64_t data_size = size - data_start;
  std::set<std::string, std::less<>> seen;

  for (auto field : root) {
    const std::string_view key = field.key;
    if (!seen.emplace(key).second) fail_tensor(path, key, "appears twice in the header");
    if (key == "__metadata__") {
      simdjson::dom::object meta;
      if (field.value.get_object().get(meta)) fail(path, "\"__metadata__\" is not a JSON object");
      for (auto m : meta) {
        std::string_view value;
        if (m.value.get_string().get(value)) {
          fail(path, fmt::format("\"__metadata__\" entry \"{}\" is not a string", std::string_view(m.key)));
        }
        file.metadata_.emplace(std::string(m.key), std::string(value));
      }
      continue;
    }

    simdjson::dom::object entry;
    if (field.value.get_object().get(entry)) fail_tensor(path, key, "the entry is not a JSON object");
    TensorView t;
    t.name = std::string(key);

    bool have_dtype = false, have_shape = false, have_offsets = false;
    std::uint64_t begin = 0, end = 0;
    for (auto member : entry) {
      const std::string_view mkey = member.key;
      if (mkey == "dtype") {
        std::string_view name;
        if (member.value.get_string().get(name)) fail_tensor(path, key, "\"dtype\" is not a string");
        if (!dtype_from_name(name, t.dtype)) {
          fail_tensor(path, key, fmt::format("unknown dtype \"{}\" (known: {})", name, dtype_list()));
        }
        have_dtype = true;
      } else if (mkey == "shape") {
        simdjson::dom::array dims;
        if (member.value.get_array().get(dims)) fail_tensor(path, key, "\"shape\" is not an array");
        for (auto d : dims) {
          std::uint64_t v = 0;
          if (d.get_uint64().get(v) || v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            fail_tensor(path, key, "\"shape\" holds something other than a non-negative integer");
          }
          t.shape.push_back(static_cast<std::int64_t>(v));
        }
        have_shape = true;
      } else if (mkey == "data_offsets") {
        simdjson::dom::array offs;
        if (member.value.get_array().get(offs)) fail_tensor(path, key, "\"data_offsets\" is not an array");
        std::vector<std::uint64_t> values;
        for (auto o : offs) {
          std::uint64_t v = 0;
          if (o.get_uint64().get(v)) {
            fail_tensor(path, key, "\"data_offsets\" holds something other than a non-negative integer");
          }
          values.push_back(v);
        }
        if (values.size() != 2) {
          fail_tensor(path, key, fmt::format("\"data_offsets\" has {} values, expected [begin, end]", values.size()));
        }
        begin = values[0];
        end = values[1];
        have_offsets = true;
      } else {
        fail_tensor(path, key, fmt::format("unexpected key \"{}\" (expected dtype, shape, data_offsets)", mkey));
      }
    }
    if (!have_dtype) fail_tensor(path, key, "\"dtype\" is missing");
    if (!have_shape) fail_tensor(path, key, "\"shape\" is missing");
    if (!have_offsets) fail_tensor(path, key, "\"data_offsets\" is missing");
    if (end < begin) fail_tensor(path, key, fmt::format("data_offsets [{}, {}] end before they begin", begin, end));
    if (end > data_size) {
      fail_tensor(path, key,
                  fmt::format("data_offsets [{}, {}] run past the end of the data area ({} bytes)", begin, end,
                              data_size));
    }
    // Element count and byte size, refusing what does not fit: the count must fit the int64
    // that numel() and libtorch use, even when a zero dimension makes the product 0 (the
    // dimensions multiplied in order must not pass 2^63 - 1 first), and the byte size must fit
    // 64 bits. Overflow would otherwise make a huge shape look as small as its data range.
    std::uint64_t elements = 1;
    bool empty = false;
    for (auto d : t.shape) {
      const auto ud = static_cast<std::uint64_t>(d);
      if (ud == 0) {
        empty = true;
        continue;
      }
      if (elements > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / ud) {
        fail_tensor(path, key,
                    fmt::format("shape {} is too large: its dimensions multiply past 2^63 - 1 elements",
                                t.shape_string()));
      }
      elements *= ud;
    }
    if (empty) elements = 0;
    const std::uint64_t elem_size = dtype_size(t.dtype);
    if (elements > std::numeric_limits<std::uint64_t>::max() / elem_size) {
      fail_tensor(path, key,
                  fmt::format("shape {} of {} is too large: its byte size overflows 64 bits", t.shape_string(),
                              dtype_name(t.dtype)));
    }
    const std::uint64_t bytes = elements * elem_size;
    if (bytes != end - begin) {
      fail_tensor(path, key,
                  fmt::format("shape {} of {} needs {} bytes but data_offsets [{}, {}] hold {}", t.shape_string(),
                              dtype_name(t.dtype), bytes, begin, end, end - begin));
    }
    t.offset = begin;
    t.data = std::span<const std::byte>(file.map_ + data_start + begin, end - begin);
    file.tensors_.push_back(std::move(t));
  }

  // The tensors must tile the data area: sorted by offset, each starts where the previous ended.
  std::stable_sort(file.tensors_.begin(), file.tensors_.end(), [](const TensorView& a, const TensorView& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.data.size() < b.data.size();
  });
  std::uint64_t expected = 0;
  const TensorView* previous = nullptr;
  for (const auto& t : file.tensors_) {
    if (t.offset < expected) {
      fail_tensor(path, t.name,
                  fmt::format("data_offsets [{}, {}] overlap tensor \"{}\" ending at {}", t.offset,
                              t.offset + t.data.size(), previous->name, expected));
    }
    if (t.offset > expected) {
      fail_tensor(path, t.name,
                  fmt::format("data_offsets [{}, {}] leave a gap: the previous tensor ends at {}", t.offset,
                              t.offset + t.data.size(), expected));
    }
    expected = t.offset + t.data.size();
    previous = &t;
  }
  if (expected != data_size) {
    fail(path, fmt::format("the tensors cover {} bytes but the data area holds {} (truncated or trailing data)",
                           expected, data_size));
  }
  for (std::size_t i = 0; i < file.tensors_.size(); ++i) file.index_.emplace(file.tensors_[i].name, i);
  return file;
}

}  // namespace sluice
