#include "post_processor.hpp"

namespace sluice::tok {

std::size_t TemplateProcessor::added_tokens() const {
  std::size_t n = 0;
  for (const auto& p : single_) n += p.is_sequence ? 0 : p.ids.size();
  return n;
}

void TemplateProcessor::process(std::vector<Token>& tokens, std::vector<std::int32_t>& type_ids,
                                bool add_special_tokens) const {
  if (!add_special_tokens) {
    if (!set_type_ids_without_specials_) return;
    for (const auto& p : single_) {
      if (p.is_sequence) type_ids.assign(tokens.size(), p.type_id);
    }
    return;
  }
  thread_local std::vector<Token> out;
  thread_local std::vector<std::int32_t> types;
  out.clear();
  types.clear();
  for (const auto& p : single_) {
    if (p.is_sequence) {
      out.insert(out.end(), tokens.begin(), tokens.end());
      types.insert(types.end(), tokens.size(), p.type_id);
    } else {
      for (auto id : p.ids) {
        out.push_back({id, 0, 0});
        types.push_back(p.type_id);
      }
    }
  }
  tokens.assign(out.begin(), out.end());
  type_ids.assign(types.begin(), types.end());
}

}  // namespace sluice::tok
