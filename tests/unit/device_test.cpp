// ModelOptions::device (docs/models.md, "Devices"): the names, the refusal at load where CUDA
// cannot run, and, where a CUDA device is visible, cuda against cpu on every model family.
//
// Needs SLUICE_TEST_MODELS and SLUICE_TEST_TORCHSCRIPT (meson's test setup sets them); the
// Universal Sentence Encoder Lite folder (models/use-lite, or SLUICE_USE_LITE_MODEL) is used
// when it is there.

#include <doctest/doctest.h>

#include <torch/cuda.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <sluice/error.hpp>
#include <sluice/model.hpp>

#include "test_models.hpp"

using namespace sluice;
using sluice::test::models_root;
using sluice::test::torchscript_root;
using sluice::test::cosine;
namespace fs = std::filesystem;

namespace {

#ifdef SLUICE_WITH_CUDA
constexpr bool kBuiltWithCuda = true;
#else
constexpr bool kBuiltWithCuda = false;
#endif



/// The converted USE Lite folder, or empty when it is not installed.
fs::path use_lite_dir() {
  fs::path dir;
  if (const char* v = std::getenv("SLUICE_USE_LITE_MODEL"); v && *v) {
    dir = v;
  } else {
    const char* root = std::getenv("SLUICE_SOURCE_ROOT");
    dir = fs::path(root ? root : ".") / "models" / "use-lite";
  }
  std::error_code ec;
  return fs::is_regular_file(dir / "config.json", ec) ? dir : fs::path();
}

/// Every model folder the tests have: each native family, TorchScript and (if installed) USE Lite.
std::vector<fs::path> model_folders() {
  std::vector<fs::path> dirs;
  for (const char* name : {"minilm", "tiny", "roberta", "xlm-roberta", "jina-code", "jina-en"}) {
    dirs.push_back(models_root() / name);
  }
  dirs.push_back(torchscript_root());
  if (fs::path u = use_lite_dir(); !u.empty()) dirs.push_back(u);
  return dirs;
}

/// The sluice::Error message of parse_device(text), checking its code; "" when it parses.
std::string parse_error(const std::string& text) {
  try {
    parse_device(text);
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
    return e.what();
  }
  return "";
}

/// The sluice::Error message of loading `dir` with `options`, checking its code; "" when it loads.
std::string load_error(const fs::path& dir, const ModelOptions& options) {
  try {
    Model::load(dir, options);
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
    return e.what();
  }
  return "";
}

/// A batch of `rows` rows of ids in [5, 1000) (inside every test model's vocabulary, clear of
/// their special ids), lengths 1 .. 40 varying by row, right-padded with `pad`. With `hole`,
/// row 1 has a masked position inside it (the packed path's non-contiguous case).
TokenBatch make_batch(std::uint32_t rows, std::int64_t pad, bool hole, std::uint32_t seed = 1) {
  TokenBatch tb;
  tb.batch = rows;
  std::vector<std::uint32_t> lengths(rows);
  std::uint32_t x = seed;
  auto next = [&x] {
    x = x * 1664525u + 1013904223u;  // Numerical Recipes' LCG
    return x >> 8;
  };
  for (auto& l : lengths) l = 1 + next() % 40;
  if (hole && rows > 1) lengths[1] = std::max<std::uint32_t>(lengths[1], 8);
  tb.seq_len = *std::max_element(lengths.begin(), lengths.end());
  const std::size_t cells = std::size_t{rows} * tb.seq_len;
  tb.ids.assign(cells, pad);
  tb.attention_mask.assign(cells, 0);
  tb.type_ids.assign(cells, 0);
  for (std::uint32_t r = 0; r < rows; ++r) {
    for (std::uint32_t c = 0; c < lengths[r]; ++c) {
      tb.ids[std::size_t{r} * tb.seq_len + c] = 5 + next() % 995;
      tb.attention_mask[std::size_t{r} * tb.seq_len + c] = 1;
    }
  }
  if (hole && rows > 1) tb.attention_mask[std::size_t{tb.seq_len} + 3] = 0;
  return tb;
}

/// The padding id: 1 for the RoBERTa-style test models (their positions count the others), else 0.
std::int64_t pad_of(const Model& model) {
  const std::string& f = model.info().family;
  return f == "roberta" || f == "xlm-roberta" ? 1 : 0;
}

/// The smallest cosine between corresponding rows of `a` and `b`.
double min_row_cosine(const std::vector<float>& a, const std::vector<float>& b, std::size_t dims) {
  REQUIRE(a.size() == b.size());
  double worst = 1;
  for (std::size_t r = 0; r * dims < a.size(); ++r) worst = std::min(worst, cosine(&a[r * dims], &b[r * dims], dims));
  return worst;
}

std::vector<float> embed(Model& model, const TokenBatch& tb) {
  std::vector<float> out(std::size_t{tb.batch} * model.info().dimensions, -7.0f);
  model.embed(tb, out);
  return out;
}

bool cuda_visible() { return torch::cuda::is_available(); }

}  // namespace

TEST_CASE("device names: cpu, cuda and cuda:N parse; anything else is refused with what is accepted") {
  CHECK(parse_device("cpu") == Device{});
  CHECK(parse_device("cuda") == Device{DeviceKind::cuda, 0});
  CHECK(parse_device("cuda:0") == Device{DeviceKind::cuda, 0});
  CHECK(parse_device("cuda:3") == Device{DeviceKind::cuda, 3});
  CHECK(parse_device("cuda:127") == Device{DeviceKind::cuda, 127});
  CHECK(Device{} == Device{DeviceKind::cpu, 0});  // the default is the CPU
  CHECK(ModelOptions{}.device == Device{});

  CHECK(device_name(Device{}) == "cpu");
  CHECK(device_name(Device{DeviceKind::cuda, 0}) == "cuda:0");
  CHECK(device_name(Device{DeviceKind::cuda, 12}) == "cuda:12");
  for (const char* name : {"cpu", "cuda:0", "cuda:5"}) CHECK(device_name(parse_device(name)) == name);

  for (const char* bad : {"", "gpu", "CPU", "Cuda", "cuda:", "cuda:-1", "cuda:+1", "cuda:x", "cuda:1x", "cuda: 1",
                          " cpu", "cpu ", "cuda0", "cuda:0:1", "mps"}) {
    CAPTURE(bad);
    CHECK(parse_error(bad) ==
          "device \"" + std::string(bad) + "\" is not cpu, cuda or cuda:N (N a CUDA device index: 0, 1, ...)");
  }
  CHECK(parse_error("cuda:128") == "device \"cuda:128\": the CUDA device index is out of range (0 .. 127)");
  CHECK(parse_error("cuda:99999999999999999999") ==
        "device \"cuda:99999999999999999999\": the CUDA device index is out of range (0 .. 127)");
}

TEST_CASE("device cpu, given or by default, is the CPU path: the same bytes") {
  ModelOptions options;
  options.threads = 2;
  auto by_default = Model::load(models_root() / "minilm", options);
  options.device = parse_device("cpu");
  auto given = Model::load(models_root() / "minilm", options);
  CHECK(given->info().device == Device{});
  const TokenBatch tb = make_batch(6, 0, true);
  CHECK(embed(*by_default, tb) == embed(*given, tb));
}

TEST_CASE("device cuda is refused at load, saying why, where CUDA cannot run") {
  const std::size_t visible = torch::cuda::device_count();
  MESSAGE("built with CUDA: " << std::string(kBuiltWithCuda ? "yes" : "no") << "; CUDA devices visible: " << visible);

  SUBCASE("every model family") {
    for (const fs::path& dir : model_folders()) {
      CAPTURE(dir.string());
      ModelOptions options;
      if (!kBuiltWithCuda) {
        options.device = parse_device("cuda");
        CHECK(load_error(dir, options) ==
              "device cuda:0: this sluice was built without CUDA: configure it with -Dcuda=enabled against a "
              "CUDA-enabled libtorch (docs/models.md, \"Devices\")");
        options.device = parse_device("cuda:2");
        CHECK(load_error(dir, options) ==
              "device cuda:2: this sluice was built without CUDA: configure it with -Dcuda=enabled against a "
              "CUDA-enabled libtorch (docs/models.md, \"Devices\")");
      } else if (visible == 0) {
        options.device = parse_device("cuda");
        CHECK(load_error(dir, options) ==
              "device cuda:0: no CUDA device is visible (torch::cuda::device_count() is 0): check the NVIDIA driver "
              "and CUDA_VISIBLE_DEVICES");
      } else {
        options.device = Device{DeviceKind::cuda, static_cast<int>(visible)};
        const std::string name = device_name(options.device);
        const std::string range = visible == 1 ? "cuda:0" : "cuda:0 .. cuda:" + std::to_string(visible - 1);
        CHECK(load_error(dir, options) == "device " + name + ": only " + std::to_string(visible) + " CUDA device" +
                                              (visible == 1 ? " is" : "s are") + " visible (" + range + ")");
      }
    }
  }
  SUBCASE("precision int8 runs on the CPU only, on any build") {
    ModelOptions options;
    options.precision = Precision::int8;
    options.device = parse_device("cuda:1");
    CHECK(load_error(models_root() / "minilm", options) ==
          "precision int8 runs on the CPU only (libtorch's dynamic quantisation): with device cuda:1 use fp32 or "
          "bf16");
  }
}

// Runs only where libtorch sees a CUDA device (a -Dcuda=enabled build on a machine with a GPU);
// elsewhere doctest reports it as skipped. It has never run in this project (docs/models.md).
TEST_CASE("cuda embeds as cpu does, every family, pooling mode and staging case" * doctest::skip(!cuda_visible())) {
  if (!cuda_visible()) {  // under --no-skip
    MESSAGE("skipped: no CUDA device is visible");
    return;
  }
  ModelOptions cpu_options;
  cpu_options.threads = 2;
  ModelOptions cuda_options = cpu_options;
  cuda_options.device = parse_device("cuda");

  SUBCASE("every family, with padding and a masked position inside a row") {
    for (const fs::path& dir : model_folders()) {
      CAPTURE(dir.string());
      auto cpu = Model::load(dir, cpu_options);
      auto cuda = Model::load(dir, cuda_options);
      CHECK(cuda->info().device == Device{DeviceKind::cuda, 0});
      const std::int64_t pad = pad_of(*cpu);
      for (std::uint32_t seed : {1u, 2u}) {
        const TokenBatch tb = make_batch(12, pad, seed == 1, seed);
        const double c = min_row_cosine(embed(*cpu, tb), embed(*cuda, tb), cpu->info().dimensions);
        MESSAGE(dir.filename().string() << " seed " << seed << ": cosine min " << c);
        CHECK(c >= 0.99999);
      }
    }
  }
  SUBCASE("every pooling mode and prompt exclusion (minilm)") {
    for (Pooling pooling : {Pooling::mean, Pooling::cls, Pooling::max, Pooling::last_token}) {
      CAPTURE(static_cast<int>(pooling));
      ModelOptions a = cpu_options, b = cuda_options;
      a.pooling = b.pooling = pooling;
      a.normalize = b.normalize = false;
      auto cpu = Model::load(models_root() / "minilm", a);
      auto cuda = Model::load(models_root() / "minilm", b);
      TokenBatch tb = make_batch(10, 0, true, 3);
      CHECK(min_row_cosine(embed(*cpu, tb), embed(*cuda, tb), 384) >= 0.99999);
      tb.prompt_tokens.assign(tb.batch, 2);  // counted only where include_prompt is false
      CHECK(min_row_cosine(embed(*cpu, tb), embed(*cuda, tb), 384) >= 0.99999);
    }
  }
  SUBCASE("a batch larger than the first pinned arena, then small ones reusing it, and a failed batch") {
    auto cpu = Model::load(models_root() / "minilm", cpu_options);
    auto cuda = Model::load(models_root() / "minilm", cuda_options);
    TokenBatch big;  // 64 x 250 tokens: ids, rows and more exceed 16384 staged int64s
    big.batch = 64;
    big.seq_len = 250;
    big.ids.resize(64 * 250);
    for (std::size_t i = 0; i < big.ids.size(); ++i) big.ids[i] = 5 + static_cast<std::int64_t>((i * 7919) % 995);
    big.attention_mask.assign(big.ids.size(), 1);
    for (std::size_t r = 0; r < 64; ++r) {
      for (std::size_t c = 200 + r % 50; c < 250; ++c) big.attention_mask[r * 250 + c] = 0;  // padded
    }
    CHECK(min_row_cosine(embed(*cpu, big), embed(*cuda, big), 384) >= 0.99999);
    const TokenBatch small = make_batch(5, 0, false, 4);
    const std::vector<float> first = embed(*cuda, small);
    CHECK(min_row_cosine(embed(*cpu, small), first, 384) >= 0.99999);
    TokenBatch bad = small;
    bad.ids[0] = 1 << 30;  // outside the vocabulary: a model_error, and the model stays usable
    std::vector<float> out(5 * 384);
    CHECK_THROWS_AS(cuda->embed(bad, out), Error);
    CHECK(min_row_cosine(embed(*cuda, small), first, 384) >= 0.9999999);
  }
  SUBCASE("bf16 on cuda stays close to fp32 on cpu") {
    ModelOptions b = cuda_options;
    b.precision = Precision::bf16;
    auto cpu = Model::load(models_root() / "minilm", cpu_options);
    auto cuda = Model::load(models_root() / "minilm", b);
    const TokenBatch tb = make_batch(8, 0, false, 5);
    const double c = min_row_cosine(embed(*cpu, tb), embed(*cuda, tb), 384);
    MESSAGE("bf16 on cuda vs fp32 on cpu: cosine min " << c);
    CHECK(c >= 0.999);
  }
}
