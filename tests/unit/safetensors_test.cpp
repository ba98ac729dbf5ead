#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <sluice/error.hpp>
#include <sluice/safetensors.hpp>

using namespace sluice;
namespace fs = std::filesystem;

namespace {

/// A temporary folder removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("sluice-st-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

/// Writes an 8-byte little-endian length, the header as given, then the data bytes.
fs::path write_file(const fs::path& path, const std::string& header, const std::string& data,
                    std::uint64_t header_len_override = UINT64_MAX) {
  std::uint64_t n = header_len_override == UINT64_MAX ? header.size() : header_len_override;
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  bytes += header;
  bytes += data;
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

std::string raw_bytes(std::initializer_list<std::uint8_t> b) { return std::string(b.begin(), b.end()); }

/// The sluice::Error message of opening `path`, or "" when it opens.
std::string open_error(const fs::path& path, ErrorCode expected = ErrorCode::invalid_model) {
  try {
    SafetensorsFile::open(path);
  } catch (const Error& e) {
    CHECK(e.code() == expected);
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("dtype names round-trip and have sizes") {
  for (auto d : {DType::boolean, DType::u8, DType::i8, DType::f8_e5m2, DType::f8_e4m3, DType::i16, DType::u16,
                 DType::f16, DType::bf16, DType::i32, DType::u32, DType::f32, DType::f64, DType::i64, DType::u64}) {
    DType back{};
    REQUIRE(dtype_from_name(dtype_name(d), back));
    CHECK(back == d);
    CHECK(dtype_size(d) > 0);
  }
  CHECK(dtype_size(DType::f32) == 4);
  CHECK(dtype_size(DType::bf16) == 2);
  CHECK(dtype_size(DType::i64) == 8);
  DType d{};
  CHECK_FALSE(dtype_from_name("f32", d));
  CHECK_FALSE(dtype_from_name("Q4", d));
}

TEST_CASE("a valid file lists its tensors in file order with their bytes") {
  TempDir tmp;
  // JSON order differs from data order; padding spaces after the header like the Python writer.
  const std::string header =
      R"({"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},)"
      R"("__metadata__":{"format":"pt","note":"x"},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("scalar":{"dtype":"I64","shape":[],"data_offsets":[12,20]},)"
      R"("empty":{"dtype":"BF16","shape":[0,3],"data_offsets":[20,20]},)"
      R"("c":{"dtype":"BF16","shape":[1,2],"data_offsets":[20,24]}}    )";
  std::string data;
  float fa[2] = {1.5f, -2.0f};
  data.append(reinterpret_cast<const char*>(fa), 8);
  data += raw_bytes({0x00, 0x3c, 0x00, 0xc0});  // F16 1.0, -2.0
  data += raw_bytes({42, 0, 0, 0, 0, 0, 0, 0}); // I64 42
  data += raw_bytes({0x80, 0x3f, 0x40, 0x40});  // BF16 1.0, 3.0
  auto path = write_file(tmp.path / "ok.safetensors", header, data);

  auto f = SafetensorsFile::open(path);
  CHECK(f.path() == path);
  CHECK(f.file_size() == 8 + header.size() + data.size());
  REQUIRE(f.tensors().size() == 5);
  CHECK(f.tensors()[0].name == "a");
  CHECK(f.tensors()[1].name == "b");
  CHECK(f.tensors()[2].name == "scalar");
  CHECK(f.tensors()[3].name == "empty");
  CHECK(f.tensors()[4].name == "c");
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.metadata().at("note") == "x");

  const TensorView* a = f.find("a");
  REQUIRE(a != nullptr);
  CHECK(a->dtype == DType::f32);
  CHECK(a->shape == std::vector<std::int64_t>{2});
  CHECK(a->numel() == 2);
  REQUIRE(a->data.size() == 8);
  float back[2];
  std::memcpy(back, a->data.data(), 8);
  CHECK(back[0] == 1.5f);
  CHECK(back[1] == -2.0f);

  const TensorView* s = f.find("scalar");
  REQUIRE(s != nullptr);
  CHECK(s->shape.empty());
  CHECK(s->numel() == 1);
  CHECK(s->shape_string() == "[]");
  CHECK(std::to_integer<int>(s->data[0]) == 42);

  const TensorView* e = f.find("empty");
  REQUIRE(e != nullptr);
  CHECK(e->numel() == 0);
  CHECK(e->data.empty());
  CHECK(e->shape_string() == "[0, 3]");

  const TensorView* c = f.find("c");
  REQUIRE(c != nullptr);
  CHECK(c->dtype == DType::bf16);
  CHECK(c->offset == 20);
  CHECK(std::to_integer<int>(c->data[1]) == 0x3f);

  CHECK(f.find("__metadata__") == nullptr);
  CHECK(f.find("missing") == nullptr);

  // Moving keeps the views valid.
  SafetensorsFile moved = std::move(f);
  CHECK(moved.find("a")->data.size() == 8);
}

TEST_CASE("an empty header object is a valid file with no tensors") {
  TempDir tmp;
  auto f = SafetensorsFile::open(write_file(tmp.path / "e.safetensors", "{}", ""));
  CHECK(f.tensors().empty());
}

TEST_CASE("corrupt files are refused with the path, the tensor and what is wrong") {
  TempDir tmp;
  const std::string ok_data(8, '\0');
  auto check = [&](const std::string& header, const std::string& data, const std::string& expected,
                   std::uint64_t header_len = UINT64_MAX) {
    CAPTURE(header);
    auto path = write_file(tmp.path / "bad.safetensors", header, data, header_len);
    std::string msg = open_error(path);
    CAPTURE(msg);
    CHECK(contains(msg, path.string() + ": "));
    CHECK(contains(msg, expected));
  };

  SUBCASE("file shorter than the length field") {
    auto path = tmp.path / "short.safetensors";
    std::ofstream(path, std::ios::binary).write("abc", 3);
    CHECK(contains(open_error(path), "too short for the 8-byte header length"));
  }
  SUBCASE("header length past the end") {
    check(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", ok_data, "runs past the end of the file",
          1000);
  }
  SUBCASE("huge header length") { check("{}", "", "runs past the end of the file", UINT64_MAX - 1); }
  SUBCASE("not JSON") { check("{\"a\": [1, 2", "", "the header is not valid JSON"); }
  SUBCASE("not starting with a brace") { check("[1, 2, 3]", "", "does not start with '{'"); }
  SUBCASE("unknown dtype") {
    check(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", ok_data,
          "tensor \"w\": unknown dtype \"Q4\"");
  }
  SUBCASE("negative dimension") {
    check(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", ok_data,
          "tensor \"w\": \"shape\" holds something other than a non-negative integer");
  }
  SUBCASE("fractional dimension") {
    check(R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", ok_data,
          "tensor \"w\": \"shape\" holds");
  }
  SUBCASE("missing dtype") {
    check(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", ok_data, "tensor \"w\": \"dtype\" is missing");
  }
  SUBCASE("missing offsets") {
    check(R"({"w":{"dtype":"F32","shape":[2]}})", ok_data, "tensor \"w\": \"data_offsets\" is missing");
  }
  SUBCASE("unexpected key") {
    check(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", ok_data,
          "tensor \"w\": unexpected key \"x\"");
  }
  SUBCASE("three offsets") {
    check(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})", ok_data,
          "tensor \"w\": \"data_offsets\" has 3 values");
  }
  SUBCASE("offsets reversed") {
    check(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", ok_data, "tensor \"w\": data_offsets [8, 0] end before");
  }
  SUBCASE("size does not match the shape") {
    check(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", ok_data,
          "tensor \"w\": shape [3] of F32 needs 12 bytes but data_offsets [0, 8] hold 8");
  }
  SUBCASE("offsets past the data") {
    check(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", ok_data,
          "tensor \"w\": data_offsets [0, 16] run past the end of the data area (8 bytes)");
  }
  SUBCASE("overlapping tensors") {
    check(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
          ok_data, "tensor \"b\": data_offsets [4, 8] overlap tensor \"a\"");
  }
  SUBCASE("a gap between tensors") {
    check(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
          std::string(12, '\0'), "tensor \"b\": data_offsets [8, 12] leave a gap");
  }
  SUBCASE("trailing data") {
    check(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", ok_data,
          "the tensors cover 4 bytes but the data area holds 8");
  }
  SUBCASE("duplicate names") {
    check(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
          ok_data, "tensor \"a\": appears twice");
  }
  SUBCASE("entry not an object") { check(R"({"a":[0,4]})", "", "tensor \"a\": the entry is not a JSON object"); }
  SUBCASE("metadata value not a string") {
    check(R"({"__metadata__":{"format":1}})", "", "\"__metadata__\" entry \"format\" is not a string");
  }
  SUBCASE("shape overflowing 64 bits") {
    check(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", ok_data,
          "tensor \"w\": shape [4294967296, 4294967296] is too large: its dimensions multiply past 2^63 - 1");
  }
  SUBCASE("an element count past 2^63 before a zero dimension") {
    check(R"({"w":{"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})", "",
          "tensor \"w\": shape [4294967296, 4294967296, 0] is too large");
  }
  SUBCASE("an element count that fits but a byte size that does not") {
    // 2^61 F64 elements are 2^64 bytes.
    check(R"({"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}})", ok_data,
          "tensor \"w\": shape [2305843009213693952] of F64 is too large: its byte size overflows 64 bits");
  }
  SUBCASE("a huge shape that fits 64 bits but not the data range") {
    check(R"({"w":{"dtype":"U8","shape":[1152921504606846976],"data_offsets":[0,8]}})", ok_data,
          "tensor \"w\": shape [1152921504606846976] of U8 needs 1152921504606846976 bytes but data_offsets "
          "[0, 8] hold 8");
  }
}

TEST_CASE("fuzz finding numel_overflow: a shape whose count overflows int64 is refused") {
  // tests/fuzz/findings/safetensors/numel_overflow: a header with shape [2^62, 2, 0], U8, data
  // [0, 0]. Its byte size is 0, but 2^62 * 2 overflowed int64 in numel() (UBSan).
  const char* root = std::getenv("SLUICE_SOURCE_ROOT");
  const fs::path finding = fs::path(root ? root : ".") / "tests/fuzz/findings/safetensors/numel_overflow";
  std::ifstream in(finding, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << finding.string());
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(bytes.size() == 76);

  // As the file is: its first 8 bytes are JSON text, read as a huge header length.
  CHECK(contains(open_error(finding), finding.string() + ": the header length"));

  // As fuzz_safetensors.cpp frames it: the bytes up to the first NUL become the header.
  TempDir tmp;
  const std::size_t nul = bytes.find('\0');
  REQUIRE(nul != std::string::npos);
  const fs::path framed = write_file(tmp.path / "numel_overflow.safetensors", bytes.substr(0, nul), bytes.substr(nul + 1));
  const std::string msg = open_error(framed);
  CAPTURE(msg);
  CHECK(msg == framed.string() +
                   ": tensor \"t\": shape [4611686018427387904, 2, 0] is too large: its dimensions multiply past "
                   "2^63 - 1 elements");
}

TEST_CASE("numel() of a hand-made view never overflows") {
  TensorView t;
  t.shape = {4611686018427387904, 2, 0};
  CHECK(t.numel() == 0);
  t.shape = {4611686018427387904, 2};
  CHECK(t.numel() == INT64_MAX);
  t.shape = {3, 4};
  CHECK(t.numel() == 12);
  t.shape = {};
  CHECK(t.numel() == 1);
}

TEST_CASE("a missing file is an I/O error naming it") {
  TempDir tmp;
  auto path = tmp.path / "nope.safetensors";
  CHECK(contains(open_error(path, ErrorCode::io_error), path.string() + ": cannot open"));
}
