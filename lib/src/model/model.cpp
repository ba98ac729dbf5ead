// Model::load: reads the folder's configuration, opens the weights and picks the encoder for
// config.json's model_type. No libtorch here; the encoders live in their own files.

#include <sluice/model.hpp>

#include <charconv>
#include <system_error>

#include <fmt/format.h>

#include <sluice/error.hpp>
#include <sluice/safetensors.hpp>

#include "model/bert_model.hpp"
#include "model/cpu_allocator.hpp"
#include "model/model_config.hpp"
#include "model/torchscript_model.hpp"
#include "model/use_lite_model.hpp"

namespace sluice {
namespace {

namespace fs = std::filesystem;

bool path_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

SafetensorsFile open_weights(const ModelConfig& config) {
  const fs::path weights = config.transformer_dir / "model.safetensors";
  if (!path_exists(weights)) {
    if (path_exists(config.transformer_dir / "model.safetensors.index.json")) {
      throw Error(ErrorCode::invalid_model,
                  fmt::format("{}: missing; the folder has sharded weights (model.safetensors.index.json), which "
                              "sluice does not read yet",
                              weights.string()));
    }
    if (path_exists(config.transformer_dir / "pytorch_model.bin")) {
      throw Error(ErrorCode::invalid_model,
                  fmt::format("{}: missing; the folder only has pytorch_model.bin: convert it to safetensors "
                              "(e.g. with safetensors.torch.save_file)",
                              weights.string()));
    }
    throw Error(ErrorCode::invalid_model, fmt::format("{}: missing (the model's weights)", weights.string()));
  }
  return SafetensorsFile::open(weights);
}

}  // namespace

std::uint32_t model_max_tokens(const std::filesystem::path& dir) { return load_model_config(dir).max_tokens; }

std::string device_name(const Device& device) {
  return device.kind == DeviceKind::cpu ? std::string("cpu") : fmt::format("cuda:{}", device.index);
}

Device parse_device(std::string_view text) {
  constexpr int kMaxIndex = 127;  // c10::DeviceIndex is an int8_t
  if (text == "cpu") return Device{};
  if (text == "cuda") return Device{DeviceKind::cuda, 0};
  constexpr std::string_view kCudaPrefix = "cuda:";
  if (text.starts_with(kCudaPrefix)) {
    const std::string_view digits = text.substr(kCudaPrefix.size());
    int index = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
    const bool all_digits =
        !digits.empty() && digits.find_first_not_of("0123456789") == std::string_view::npos;
    if (all_digits && (ec == std::errc::result_out_of_range || (ec == std::errc() && index > kMaxIndex))) {
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("device \"{}\": the CUDA device index is out of range (0 .. {})", text, kMaxIndex));
    }
    if (all_digits && ec == std::errc() && end == digits.data() + digits.size()) {
      return Device{DeviceKind::cuda, index};
    }
  }
  throw Error(ErrorCode::invalid_argument,
              fmt::format("device \"{}\" is not cpu, cuda or cuda:N (N a CUDA device index: 0, 1, ...)", text));
}

std::string_view precision_name(Precision precision) noexcept {
  switch (precision) {
    case Precision::fp32: return "fp32";
    case Precision::bf16: return "bf16";
    case Precision::int8: return "int8";
  }
  return "?";
}

bool precision_from_name(std::string_view name, Precision& out) noexcept {
  for (Precision p : {Precision::fp32, Precision::bf16, Precision::int8}) {
    if (precision_name(p) == name) {
      out = p;
      return true;
    }
  }
  return false;
}

std::unique_ptr<Model> Model::load(const fs::path& dir, const ModelOptions& options) {
  if (options.device.kind != DeviceKind::cpu && options.precision == Precision::int8) {
    throw Error(ErrorCode::invalid_argument,
                fmt::format("precision int8 runs on the CPU only (libtorch's dynamic quantisation): with device {} "
                            "use fp32 or bf16",
                            device_name(options.device)));
  }
  ModelConfig config = load_model_config(dir);
  if (options.device.kind == DeviceKind::cpu) {
    use_size_class_cpu_allocator();
    bound_onednn_primitive_cache();
  }
  if (options.pooling) config.pooling = *options.pooling;
  if (options.normalize) config.normalize = *options.normalize;
  // A traced TorchScript module stands in for the weights when there are none.
  const fs::path module = config.transformer_dir / "model.pt";
  if (!path_exists(config.transformer_dir / "model.safetensors") && path_exists(module)) {
    return load_torchscript_model(config, module, options);
  }
  const std::string& type = config.transformer.model_type;
  if (is_bert_family(config.transformer)) {
    const SafetensorsFile weights = open_weights(config);
    return load_bert_model(config, weights, options);
  }
  if (type == "use_lite") {  // Universal Sentence Encoder Lite (tools/models/convert_use_lite.mjs)
    const SafetensorsFile weights = open_weights(config);
    return load_use_lite_model(config, weights, options);
  }
  throw Error(ErrorCode::invalid_model,
              fmt::format("{}: model_type \"{}\" is not supported (supported: bert, roberta, xlm-roberta, use_lite; "
                          "or a TorchScript model.pt)",
                          (config.transformer_dir / "config.json").string(), type));
}

}  // namespace sluice
