#include "model/model_config.hpp"

#include <algorithm>
#include <limits>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/format.h>
#include <simdjson.h>

#include <sluice/error.hpp>

namespace sluice {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const fs::path& file, std::string_view what) {
  throw Error(ErrorCode::invalid_model, fmt::format("{}: {}", file.string(), what));
}

bool file_exists(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

/// A parsed JSON file; keeps its parser alive with the document.
struct JsonFile {
  fs::path path;
  simdjson::dom::parser parser;
  simdjson::dom::object root;

  explicit JsonFile(fs::path p) : path(std::move(p)) {
    simdjson::dom::element doc;
    if (auto err = parser.load(path.string()).get(doc); err) {
      if (err == simdjson::IO_ERROR) {
        throw Error(ErrorCode::invalid_model, fmt::format("{}: cannot read the file", path.string()));
      }
      fail(path, fmt::format("not valid JSON: {}", simdjson::error_message(err)));
    }
    if (doc.get_object().get(root)) fail(path, "not a JSON object");
  }

  /// The field, or an absent optional when missing or null.
  std::optional<simdjson::dom::element> field(std::string_view key) const {
    simdjson::dom::element e;
    if (root.at_key(key).get(e) || e.is_null()) return std::nullopt;
    return e;
  }

  std::optional<std::uint32_t> u32(std::string_view key) const {
    auto e = field(key);
    if (!e) return std::nullopt;
    std::uint64_t v = 0;
    if (e->get_uint64().get(v) || v > std::numeric_limits<std::uint32_t>::max()) {
      fail(path, fmt::format("field \"{}\" is not a non-negative integer below 2^32", key));
    }
    return static_cast<std::uint32_t>(v);
  }

  std::uint32_t required_u32(std::string_view key) const {
    auto v = u32(key);
    if (!v) fail(path, fmt::format("field \"{}\" is missing", key));
    if (*v == 0) fail(path, fmt::format("field \"{}\" is 0", key));
    return *v;
  }

  std::optional<std::int64_t> i64(std::string_view key) const {
    auto e = field(key);
    if (!e) return std::nullopt;
    std::int64_t v = 0;
    if (e->get_int64().get(v)) fail(path, fmt::format("field \"{}\" is not an integer", key));
    return v;
  }

  std::optional<double> number(std::string_view key) const {
    auto e = field(key);
    if (!e) return std::nullopt;
    double v = 0;
    if (e->get_double().get(v)) fail(path, fmt::format("field \"{}\" is not a number", key));
    return v;
  }

  std::optional<std::string> string(std::string_view key) const {
    auto e = field(key);
    if (!e) return std::nullopt;
    std::string_view v;
    if (e->get_string().get(v)) fail(path, fmt::format("field \"{}\" is not a string", key));
    return std::string(v);
  }

  std::optional<bool> boolean(std::string_view key) const {
    auto e = field(key);
    if (!e) return std::nullopt;
    bool v = false;
    if (e->get_bool().get(v)) fail(path, fmt::format("field \"{}\" is not true or false", key));
    return v;
  }
};

TransformerConfig read_transformer_config(const fs::path& path) {
  if (!file_exists(path)) {
    fail(path, "missing: a model folder needs the Hugging Face config.json next to the weights");
  }
  JsonFile f(path);
  TransformerConfig c;
  auto type = f.string("model_type");
  if (!type) fail(path, "field \"model_type\" is missing");
  c.model_type = *type;
  c.hidden_size = f.required_u32("hidden_size");
  c.num_hidden_layers = f.required_u32("num_hidden_layers");
  c.num_attention_heads = f.required_u32("num_attention_heads");
  c.intermediate_size = f.required_u32("intermediate_size");
  c.vocab_size = f.required_u32("vocab_size");
  if (auto v = f.string("hidden_act")) c.hidden_act = *v;
  if (auto v = f.number("layer_norm_eps")) c.layer_norm_eps = *v;
  if (auto v = f.u32("max_position_embeddings")) c.max_position_embeddings = *v;
  if (auto v = f.u32("type_vocab_size")) c.type_vocab_size = *v;
  // RobertaConfig and XLMRobertaConfig default pad_token_id to 1, BertConfig to 0.
  if (c.model_type == "roberta" || c.model_type == "xlm-roberta") c.pad_token_id = 1;
  if (auto v = f.i64("pad_token_id")) c.pad_token_id = *v;
  if (auto v = f.string("position_embedding_type")) c.position_embedding_type = *v;
  if (auto v = f.string("feed_forward_type")) c.feed_forward_type = *v;
  if (c.hidden_size % c.num_attention_heads != 0) {
    fail(path, fmt::format("hidden_size {} is not a multiple of num_attention_heads {}", c.hidden_size,
                           c.num_attention_heads));
  }
  if (!(c.layer_norm_eps > 0)) fail(path, "field \"layer_norm_eps\" must be positive");
  if (c.max_position_embeddings == 0) fail(path, "field \"max_position_embeddings\" is 0");
  return c;
}

struct Module {
  std::string type;
  fs::path path;
};

std::vector<Module> read_modules(const fs::path& path) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (auto err = parser.load(path.string()).get(doc); err) {
    fail(path, fmt::format("not valid JSON: {}", simdjson::error_message(err)));
  }
  simdjson::dom::array list;
  if (doc.get_array().get(list)) fail(path, "not a JSON array of modules");
  std::vector<Module> out;
  std::size_t i = 0;
  for (auto item : list) {
    simdjson::dom::object obj;
    std::string_view type, p;
    if (item.get_object().get(obj) || obj["type"].get_string().get(type)) {
      fail(path, fmt::format("module {} has no \"type\" string", i));
    }
    if (obj["path"].get_string().get(p)) p = {};
    out.push_back({std::string(type), fs::path(std::string(p))});
    ++i;
  }
  return out;
}

bool ends_with_type(std::string_view type, std::string_view name) {
  // "sentence_transformers.models.Pooling" or a bare "Pooling".
  return type == name || (type.size() > name.size() && type.ends_with(name) &&
                          type[type.size() - name.size() - 1] == '.');
}

Pooling read_pooling(const fs::path& path, std::uint32_t hidden_size) {
  if (!file_exists(path)) fail(path, "missing: modules.json names a Pooling module but its config.json is not there");
  JsonFile f(path);
  if (auto dim = f.u32("word_embedding_dimension"); dim && *dim != hidden_size) {
    fail(path, fmt::format("word_embedding_dimension {} differs from the model's hidden_size {}", *dim, hidden_size));
  }
  // Newer sentence-transformers may also write "pooling_mode": "mean".
  struct Mode {
    std::string_view key;
    std::string_view short_name;
    std::optional<Pooling> pooling;  // nullopt: known to sentence-transformers, not supported here
  };
  static constexpr Mode kModes[] = {
      {"pooling_mode_mean_tokens", "mean", Pooling::mean},
      {"pooling_mode_cls_token", "cls", Pooling::cls},
      {"pooling_mode_max_tokens", "max", Pooling::max},
      {"pooling_mode_lasttoken", "lasttoken", Pooling::last_token},
      {"pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens", std::nullopt},
      {"pooling_mode_weightedmean_tokens", "weightedmean", std::nullopt},
  };
  std::vector<const Mode*> on;
  for (const auto& m : kModes) {
    if (f.boolean(m.key).value_or(false)) on.push_back(&m);
  }
  if (on.empty()) {
    if (auto mode = f.string("pooling_mode")) {
      for (const auto& m : kModes) {
        if (m.short_name == *mode || (m.short_name == "lasttoken" && *mode == "last_token")) on.push_back(&m);
      }
      if (on.empty()) fail(path, fmt::format("pooling_mode \"{}\" is not known", *mode));
    }
  }
  if (on.empty()) fail(path, "no pooling mode is set (expected e.g. \"pooling_mode_mean_tokens\": true)");
  if (on.size() > 1) {
    fail(path, fmt::format("{} pooling modes are set ({} and {}); sluice supports exactly one", on.size(),
                           on[0]->key, on[1]->key));
  }
  if (!on[0]->pooling) {
    fail(path, fmt::format("{} is not supported (supported: mean, cls, max, lasttoken)", on[0]->key));
  }
  return *on[0]->pooling;
}

/// config_sentence_transformers.json: "prompts" {name: text} and "default_prompt_name".
void read_prompts(const fs::path& path, ModelConfig& mc) {
  JsonFile f(path);
  if (auto prompts = f.field("prompts")) {
    simdjson::dom::object obj;
    if (prompts->get_object().get(obj)) fail(path, "field \"prompts\" is not a JSON object of name: text");
    for (auto p : obj) {
      std::string_view text;
      if (p.value.get_string().get(text)) {
        fail(path, fmt::format("prompt \"{}\" is not a string", std::string_view(p.key)));
      }
      mc.prompts.emplace_back(std::string(p.key), std::string(text));
    }
  }
  if (auto name = f.string("default_prompt_name")) {
    const bool known = std::any_of(mc.prompts.begin(), mc.prompts.end(),
                                   [&](const auto& p) { return p.first == *name; });
    if (!known) fail(path, fmt::format("default_prompt_name \"{}\" is not one of \"prompts\"", *name));
    mc.default_prompt_name = *name;
  }
}

}  // namespace

std::uint32_t usable_positions(const TransformerConfig& config) noexcept {
  if (config.model_type == "roberta" || config.model_type == "xlm-roberta") {
    const std::int64_t offset = config.pad_token_id + 1;
    return config.max_position_embeddings > offset
               ? static_cast<std::uint32_t>(config.max_position_embeddings - offset)
               : 0;
  }
  return config.max_position_embeddings;
}

std::string_view pooling_name(Pooling pooling) noexcept {
  switch (pooling) {
    case Pooling::mean: return "mean";
    case Pooling::cls: return "cls";
    case Pooling::max: return "max";
    case Pooling::last_token: return "last_token";
  }
  return "?";
}

ModelConfig load_model_config(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw Error(ErrorCode::invalid_model, fmt::format("{}: not a folder (expected a Hugging Face model folder)",
                                                      dir.string()));
  }
  ModelConfig mc;
  mc.dir = dir;
  mc.transformer_dir = dir;

  const fs::path modules_path = dir / "modules.json";
  std::vector<Module> modules;
  if (file_exists(modules_path)) {
    mc.sentence_transformers = true;
    modules = read_modules(modules_path);
    bool have_transformer = false;
    for (const auto& m : modules) {
      if (ends_with_type(m.type, "Transformer")) {
        if (have_transformer) fail(modules_path, "more than one Transformer module");
        have_transformer = true;
        mc.transformer_dir = dir / m.path;
      }
    }
    if (!have_transformer) fail(modules_path, "no Transformer module (sentence_transformers.models.Transformer)");
  }

  mc.transformer = read_transformer_config(mc.transformer_dir / "config.json");
  const std::uint32_t positions = usable_positions(mc.transformer);
  if (positions == 0) {
    fail(mc.transformer_dir / "config.json", "max_position_embeddings leaves no usable positions");
  }

  if (mc.sentence_transformers) {
    mc.normalize = false;
    bool have_pooling = false;
    for (const auto& m : modules) {
      if (ends_with_type(m.type, "Transformer")) continue;
      if (ends_with_type(m.type, "Pooling")) {
        if (have_pooling) fail(modules_path, "more than one Pooling module");
        have_pooling = true;
        const fs::path pooling_path = dir / m.path / "config.json";
        mc.pooling = read_pooling(pooling_path, mc.transformer.hidden_size);
        mc.include_prompt = JsonFile(pooling_path).boolean("include_prompt").value_or(true);
      } else if (ends_with_type(m.type, "Normalize")) {
        mc.normalize = true;
      } else {
        fail(modules_path, fmt::format("module type \"{}\" is not supported (supported: Transformer, Pooling, "
                                       "Normalize)",
                                       m.type));
      }
    }
    // sentence-transformers adds mean pooling when a folder has none.
    if (!have_pooling) mc.pooling = Pooling::mean;
  } else {
    mc.pooling = Pooling::mean;
    mc.normalize = true;
  }
  // sentence_bert_config.json: next to config.json, or in the folder itself.
  for (const fs::path& p : {mc.transformer_dir / "sentence_bert_config.json", dir / "sentence_bert_config.json"}) {
    if (!file_exists(p)) continue;
    JsonFile f(p);
    if (auto v = f.u32("max_seq_length")) {
      if (*v == 0) fail(p, "field \"max_seq_length\" is 0");
      mc.max_seq_length = *v;
    }
    break;
  }
  mc.max_tokens = mc.max_seq_length ? std::min(*mc.max_seq_length, positions) : positions;
  // Prompts: next to modules.json (where sentence-transformers writes them).
  if (const fs::path p = dir / "config_sentence_transformers.json"; file_exists(p)) read_prompts(p, mc);
  return mc;
}

}  // namespace sluice
