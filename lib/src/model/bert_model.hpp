#pragma once
/// The BERT-family encoder (libtorch behind a plain interface: this header does not include
/// torch; bert_model.cpp is the model area's only file that does).

#include <memory>
#include <string_view>

#include <sluice/model.hpp>
#include <sluice/safetensors.hpp>

#include "model/model_config.hpp"

namespace sluice {

/// True for the model_type values load_bert_model accepts ("bert").
bool is_bert_family(std::string_view model_type) noexcept;

/// Builds a BERT encoder from `weights` (tensor names as in Hugging Face BertModel checkpoints,
/// with or without the "bert." prefix; F32, F16 or BF16, computed in F32). The weights are
/// copied: `weights` may be closed afterwards.
/// Throws sluice::Error (invalid_model) naming the weights file and the tensor that is missing
/// or has the wrong shape or dtype, or the config field that is not supported.
std::unique_ptr<Model> load_bert_model(const ModelConfig& config, const SafetensorsFile& weights,
                                       const ModelOptions& options);

}  // namespace sluice
