// Model::load: reads the folder's configuration, opens the weights and picks the encoder for
// config.json's model_type. No libtorch here; the encoders live in their own files.

#include <sluice/model.hpp>

#include <system_error>

#include <fmt/format.h>

#include <sluice/error.hpp>
#include <sluice/safetensors.hpp>

#include "model/bert_model.hpp"
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
  ModelConfig config = load_model_config(dir);
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
