#pragma once
/// The BERT-family encoders: BERT, RoBERTa, XLM-RoBERTa and JinaBERT v2 (libtorch behind a
/// plain interface: this header does not include torch).

#include <memory>
#include <string_view>

#include <sluice/model.hpp>
#include <sluice/safetensors.hpp>

#include "model/model_config.hpp"

namespace sluice {

/// True for the configurations load_bert_model accepts: model_type "bert", "roberta" or
/// "xlm-roberta" (JinaBERT v2 is model_type "bert" with position_embedding_type "alibi").
bool is_bert_family(const TransformerConfig& config) noexcept;

/// Builds the encoder from `weights`, with tensor names as in Hugging Face checkpoints:
/// BertModel / RobertaModel / XLMRobertaModel, with or without the "bert." / "roberta."
/// prefix of a ...ForMaskedLM checkpoint; JinaBERT v2 in either of Jina AI's layouts
/// (jina-bert-implementation: mlp.gated_layers, mlp.wo, mlp.layernorm, as in
/// jina-embeddings-v2-base-en; jina-bert-v2-qk-post-norm: attention.self.layer_norm_q/k,
/// layer_norm_1/2, mlp.up_gated_layer, mlp.down_layer, as in jina-embeddings-v2-base-code).
/// F32, F16 or BF16 stored; computed as options.precision says. The weights are copied:
/// `weights` may be closed afterwards.
/// Throws sluice::Error (invalid_model) naming the weights file and the tensor that is missing
/// or has the wrong shape or dtype, or the config field that is not supported; invalid_argument
/// when options.precision cannot run here.
std::unique_ptr<Model> load_bert_model(const ModelConfig& config, const SafetensorsFile& weights,
                                       const ModelOptions& options);

}  // namespace sluice
