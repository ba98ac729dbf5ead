#pragma once
/// Reading a Hugging Face model folder's configuration: config.json (the transformer's
/// hyper-parameters) and, when present, the sentence-transformers files (modules.json,
/// the Pooling module's config.json, sentence_bert_config.json). No libtorch here.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sluice/model.hpp>

namespace sluice {

/// The fields of config.json that the encoders use. Optional fields take Hugging Face
/// BertConfig's defaults (RobertaConfig's pad_token_id 1 for "roberta" and "xlm-roberta");
/// the sizes are required.
struct TransformerConfig {
  std::string model_type;                     ///< "bert", "roberta", ...
  std::uint32_t hidden_size = 0;
  std::uint32_t num_hidden_layers = 0;
  std::uint32_t num_attention_heads = 0;
  std::uint32_t intermediate_size = 0;
  std::uint32_t vocab_size = 0;
  std::string hidden_act = "gelu";
  double layer_norm_eps = 1e-12;
  std::uint32_t max_position_embeddings = 512;
  std::uint32_t type_vocab_size = 2;
  std::int64_t pad_token_id = 0;
  std::string position_embedding_type = "absolute";  ///< "absolute", or "alibi" (JinaBERT)
  std::string feed_forward_type;              ///< JinaBERT: "geglu", "reglu", ...; empty when absent
};

/// Everything Model::load needs to know before touching the weights.
struct ModelConfig {
  std::filesystem::path dir;                  ///< the folder given to Model::load
  std::filesystem::path transformer_dir;      ///< where config.json and the weights are (dir unless modules.json says otherwise)
  TransformerConfig transformer;
  bool sentence_transformers = false;         ///< modules.json was found
  Pooling pooling = Pooling::mean;
  bool normalize = true;
  std::optional<std::uint32_t> max_seq_length;  ///< from sentence_bert_config.json
  std::uint32_t max_tokens = 0;               ///< min(max_seq_length, usable positions)
  bool include_prompt = true;                 ///< the Pooling module's include_prompt
  /// config_sentence_transformers.json's "prompts" (name, text), in file order.
  std::vector<std::pair<std::string, std::string>> prompts;
  std::string default_prompt_name;            ///< empty when none
};

/// Positions the model can embed: max_position_embeddings, less the offset RoBERTa-style
/// models reserve (pad_token_id + 1) for "roberta" and "xlm-roberta".
std::uint32_t usable_positions(const TransformerConfig& config) noexcept;

/// The stable name of a pooling mode ("mean", "cls", "max", "last_token").
std::string_view pooling_name(Pooling pooling) noexcept;

/// Reads `dir`. Without modules.json the model is pooled by mean and L2-normalised (what
/// sentence-transformers does for a plain Hugging Face model, plus normalisation, which every
/// supported embedding model uses). Throws sluice::Error (invalid_model) naming the file and
/// the field that is missing, malformed or unsupported.
ModelConfig load_model_config(const std::filesystem::path& dir);

}  // namespace sluice
