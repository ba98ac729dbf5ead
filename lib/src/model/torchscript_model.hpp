#pragma once
/// A model folder whose encoder is a traced TorchScript module (model.pt) instead of
/// safetensors weights: the module makes the token embeddings, sluice pools and normalises
/// them as for its own encoders. This header does not include torch.

#include <filesystem>
#include <memory>

#include <sluice/model.hpp>

#include "model/model_config.hpp"

namespace sluice {

/// Loads `module_path` (a module saved by torch.jit.save, e.g. of torch.jit.trace) whose
/// forward(input_ids, attention_mask), both int64 [batch, tokens], returns the last hidden
/// state [batch, tokens, hidden_size] as float32, or a tuple whose first element is that.
/// The module is run once at load on a two-token row to check this. Pooling, normalisation,
/// max_tokens and prompts come from the folder as for a native model (`config`).
/// Throws sluice::Error: invalid_model naming the file when it does not load or its output has
/// the wrong shape; invalid_argument for options.precision other than fp32.
std::unique_ptr<Model> load_torchscript_model(const ModelConfig& config, const std::filesystem::path& module_path,
                                              const ModelOptions& options);

}  // namespace sluice
