#include "post_processor.hpp"

#include <fmt/format.h>

#include <sluice/error.hpp>

namespace sluice::tok {

namespace {
[[noreturn]] void bad(const std::string& what) { throw Error(ErrorCode::invalid_model, "tokenizer.json: " + what); }
}  // namespace

std::size_t TemplateProcessor::added_tokens() const {
  std::size_t n = 0;
  for (const auto& p : single_) n += p.is_sequence ? 0 : p.ids.size();
  return n;
}

void TemplateProcessor::process(std::vector<Token>& tokens, std::vector<std::int32_t>& type_ids) const {
  std::vector<Token> out;
  std::vector<std::int32_t> types;
  out.reserve(tokens.size() + added_tokens());
  types.reserve(tokens.size() + added_tokens());
  for (const auto& p : single_) {
    if (p.is_sequence) {
      for (const auto& t : tokens) {
        out.push_back(t);
        types.push_back(p.type_id);
      }
    } else {
      for (auto id : p.ids) {
        out.push_back({id, 0, 0});
        types.push_back(p.type_id);
      }
    }
  }
  tokens.swap(out);
  type_ids.swap(types);
}

std::unique_ptr<PostProcessor> make_post_processor(simdjson::dom::element e, const Vocab& vocab) {
  using namespace simdjson::dom;
  if (e.is_null()) return nullptr;
  object o;
  if (e.get_object().get(o) != simdjson::SUCCESS) bad("post_processor is not an object");
  std::string_view type;
  if (o["type"].get_string().get(type) != simdjson::SUCCESS) bad("post_processor has no \"type\"");

  // BertProcessing / RobertaProcessing: {"sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}.
  auto pair_id = [&](std::string_view key) {
    array a;
    std::int64_t id = 0;
    if (o[key].get_array().get(a) != simdjson::SUCCESS || a.size() != 2 ||
        a.at(1).get_int64().get(id) != simdjson::SUCCESS) {
      bad(fmt::format("{} has no valid \"{}\"", type, key));
    }
    return static_cast<std::int32_t>(id);
  };
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    std::vector<TemplateProcessor::Piece> single;
    single.push_back({false, {pair_id("cls")}, 0});
    single.push_back({true, {}, 0});
    single.push_back({false, {pair_id("sep")}, 0});
    return std::make_unique<TemplateProcessor>(std::move(single));
  }
  if (type == "TemplateProcessing") {
    object specials;
    if (o["special_tokens"].get_object().get(specials) != simdjson::SUCCESS)
      bad("TemplateProcessing without \"special_tokens\"");
    array single;
    if (o["single"].get_array().get(single) != simdjson::SUCCESS)
      bad("TemplateProcessing without a \"single\" template");
    std::vector<TemplateProcessor::Piece> pieces;
    for (element item : single) {
      object it;
      if (item.get_object().get(it) != simdjson::SUCCESS) bad("TemplateProcessing: a template piece is not an object");
      object body;
      TemplateProcessor::Piece piece;
      std::int64_t type_id = 0;
      if (it["Sequence"].get_object().get(body) == simdjson::SUCCESS) {
        piece.is_sequence = true;
        if (body["type_id"].get_int64().get(type_id) != simdjson::SUCCESS) {  // keeps the default
        }
      } else if (it["SpecialToken"].get_object().get(body) == simdjson::SUCCESS) {
        std::string_view name;
        if (body["id"].get_string().get(name) != simdjson::SUCCESS)
          bad("TemplateProcessing: SpecialToken without \"id\"");
        if (body["type_id"].get_int64().get(type_id) != simdjson::SUCCESS) {  // keeps the default
        }
        object spec;
        array ids;
        if (specials[name].get_object().get(spec) != simdjson::SUCCESS ||
            spec["ids"].get_array().get(ids) != simdjson::SUCCESS) {
          // Fall back to the vocabulary when the special token map lacks it.
          auto v = vocab.find(name);
          if (v == vocab.end()) bad(fmt::format("TemplateProcessing: special token \"{}\" is unknown", name));
          piece.ids.push_back(v->second);
        } else {
          for (element id : ids) {
            std::int64_t x = 0;
            if (id.get_int64().get(x) != simdjson::SUCCESS)
              bad("TemplateProcessing: a special token id is not a number");
            piece.ids.push_back(static_cast<std::int32_t>(x));
          }
        }
      } else {
        bad("TemplateProcessing: a template piece is neither Sequence nor SpecialToken");
      }
      piece.type_id = static_cast<std::int32_t>(type_id);
      pieces.push_back(std::move(piece));
    }
    return std::make_unique<TemplateProcessor>(std::move(pieces));
  }
  bad(fmt::format("unsupported post_processor type \"{}\"", type));
}

}  // namespace sluice::tok
