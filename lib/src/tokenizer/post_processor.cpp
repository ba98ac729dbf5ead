#include "post_processor.hpp"

#include <algorithm>

#include "unicode.hpp"

namespace sluice::tok {

std::size_t TemplateProcessor::added_tokens() const {
  std::size_t n = 0;
  for (const auto& p : single_) n += p.is_sequence ? 0 : p.ids.size();
  return n;
}

void TemplateProcessor::process(std::vector<Token>& tokens, std::vector<std::int32_t>& type_ids,
                                bool add_special_tokens, const TokenText& /*text*/,
                                std::string_view /*original*/) const {
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

// Hugging Face's byte_level::process_offsets on character offsets (what its bindings use): the
// spaces counted move the offsets by characters of the original text.
void TrimOffsetsProcessor::process(std::vector<Token>& tokens, std::vector<std::int32_t>& /*type_ids*/,
                                   bool /*add_special_tokens*/, const TokenText& text,
                                   std::string_view original) const {
  auto is_continuation = [&](std::uint32_t at) {
    return at < original.size() && (static_cast<unsigned char>(original[at]) & 0xC0) == 0x80;
  };
  // `at` moved forward (backward) by up to n characters, not past `limit`.
  auto forward = [&](std::uint32_t at, std::uint32_t n, std::uint32_t limit) {
    for (; n > 0 && at < limit; --n) {
      ++at;
      while (at < limit && is_continuation(at)) ++at;
    }
    return at;
  };
  auto backward = [&](std::uint32_t at, std::uint32_t n) {
    for (; n > 0 && at > 0; --n) {
      --at;
      while (at > 0 && is_continuation(at)) --at;
    }
    return at;
  };
  auto chars_before = [&](std::uint32_t at, std::uint32_t n) {  // at least n characters before `at`
    std::uint32_t count = 0;
    for (std::uint32_t i = at; i > 0 && count < n;) {
      --i;
      if (!is_continuation(i)) ++count;
    }
    return count >= n;
  };
  thread_local Symbols chars;
  auto is_space = [](char32_t c) { return c == 0x120 || is_whitespace(c); };
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    Token& t = tokens[i];
    const auto str = text(t.id);
    if (!str || str->empty()) continue;
    chars.clear();
    decode_utf8(*str, 0, chars);
    std::uint32_t leading = 0, trailing = 0;
    while (leading < chars.size() && is_space(chars[leading].c)) ++leading;
    while (trailing < chars.size() && is_space(chars[chars.size() - 1 - trailing].c)) ++trailing;
    if (leading > 0) {
      const bool is_first = i == 0 || t.start == 0;
      if (is_first && add_prefix_space_ && leading == 1) leading = 0;
      t.start = forward(t.start, leading, t.end);
    }
    if (trailing > 0 && chars_before(t.end, trailing)) t.end = std::max(backward(t.end, trailing), t.start);
  }
}

}  // namespace sluice::tok
