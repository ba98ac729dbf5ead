#pragma once
/// Google's Universal Sentence Encoder Lite (config.json model_type "use_lite"), as converted
/// from its TF.js graph by tools/models/convert_use_lite.mjs (libtorch behind a plain
/// interface: this header does not include torch).

#include <memory>

#include <sluice/model.hpp>
#include <sluice/safetensors.hpp>

#include "model/model_config.hpp"

namespace sluice {

/// Builds the encoder from `weights`, with the tensor names the converter writes
/// (docs/models.md, "Default model: Universal Sentence Encoder Lite"). F32, F16 or BF16
/// stored, computed in F32. The weights are copied: `weights` may be closed afterwards.
/// Throws sluice::Error (invalid_model) naming the weights file and the tensor that is missing
/// or has the wrong shape or dtype, or the config.json field that disagrees with the weights;
/// invalid_argument for a pooling other than mean (the model's tanh head was trained on its
/// mean pooling) or a precision other than fp32 (not implemented for this model).
std::unique_ptr<Model> load_use_lite_model(const ModelConfig& config, const SafetensorsFile& weights,
                                           const ModelOptions& options);

}  // namespace sluice
