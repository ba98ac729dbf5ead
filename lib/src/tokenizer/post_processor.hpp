#pragma once
// Post-processors from tokenizer.json ("post_processor"): add the special tokens around an
// encoded sequence and set its type ids. Thread: any (const).

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "model.hpp"

namespace sluice::tok {

/// The string of a token id (vocabulary or added token), for processors that look at it.
using TokenText = std::function<std::optional<std::string_view>(std::int32_t)>;

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  /// Special tokens added to a single sequence (truncation leaves room for them).
  virtual std::size_t added_tokens() const = 0;
  /// Adds the special tokens around a single sequence (when `add_special_tokens`) and sets
  /// the type ids; `type_ids` comes in all 0, as long as `tokens`. `text` gives token strings;
  /// `original` is the encoded text (token offsets are byte ranges of it).
  virtual void process(std::vector<Token>& tokens, std::vector<std::int32_t>& type_ids, bool add_special_tokens,
                       const TokenText& text, std::string_view original) const = 0;
};

/// A template of special tokens around the sequence: TemplateProcessing's "single" template,
/// and BertProcessing / RobertaProcessing for a single sequence (cls, sequence, sep).
class TemplateProcessor : public PostProcessor {
 public:
  struct Piece {
    bool is_sequence = false;
    std::vector<std::int32_t> ids;  ///< the special token's ids (a special token may be several)
    std::int32_t type_id = 0;
  };
  /// `set_type_ids_without_specials`: TemplateProcessing sets the sequence's type id even
  /// when no special tokens are added; BertProcessing does not.
  TemplateProcessor(std::vector<Piece> single, bool set_type_ids_without_specials)
      : single_(std::move(single)), set_type_ids_without_specials_(set_type_ids_without_specials) {}
  std::size_t added_tokens() const override;
  void process(std::vector<Token>& tokens, std::vector<std::int32_t>& type_ids, bool add_special_tokens,
               const TokenText& text, std::string_view original) const override;

 private:
  std::vector<Piece> single_;
  bool set_type_ids_without_specials_;
};

/// ByteLevel's offset trimming (also the first step of RobertaProcessing with trim_offsets): a
/// token's offsets lose the spaces ("Ġ" or whitespace) its string starts or ends with, except
/// the one space that add_prefix_space put before the first word. Adds no tokens. As in the
/// Hugging Face bindings, which trim character offsets, a space counts as one character of the
/// original text.
class TrimOffsetsProcessor : public PostProcessor {
 public:
  explicit TrimOffsetsProcessor(bool add_prefix_space) : add_prefix_space_(add_prefix_space) {}
  std::size_t added_tokens() const override { return 0; }
  void process(std::vector<Token>& tokens, std::vector<std::int32_t>& type_ids, bool add_special_tokens,
               const TokenText& text, std::string_view original) const override;

 private:
  bool add_prefix_space_;
};

/// Sequence: the processors one after the other.
class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> parts) : parts_(std::move(parts)) {}
  std::size_t added_tokens() const override {
    std::size_t n = 0;
    for (const auto& p : parts_) n += p->added_tokens();
    return n;
  }
  void process(std::vector<Token>& tokens, std::vector<std::int32_t>& type_ids, bool add_special_tokens,
               const TokenText& text, std::string_view original) const override {
    for (const auto& p : parts_) p->process(tokens, type_ids, add_special_tokens, text, original);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

}  // namespace sluice::tok
