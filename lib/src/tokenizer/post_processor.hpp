#pragma once
// Post-processors from tokenizer.json ("post_processor"): add the special tokens around an
// encoded sequence and set its type ids. Thread: any (const).

#include <cstdint>
#include <memory>
#include <vector>

#include "model.hpp"

namespace sluice::tok {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  /// Special tokens added to a single sequence (truncation leaves room for them).
  virtual std::size_t added_tokens() const = 0;
  /// Adds the special tokens around a single sequence (when `add_special_tokens`) and sets
  /// the type ids; `type_ids` comes in all 0, as long as `tokens`.
  virtual void process(std::vector<Token>& tokens, std::vector<std::int32_t>& type_ids,
                       bool add_special_tokens) const = 0;
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
  void process(std::vector<Token>& tokens, std::vector<std::int32_t>& type_ids, bool add_special_tokens) const override;

 private:
  std::vector<Piece> single_;
  bool set_type_ids_without_specials_;
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
  void process(std::vector<Token>& tokens, std::vector<std::int32_t>& type_ids,
               bool add_special_tokens) const override {
    for (const auto& p : parts_) p->process(tokens, type_ids, add_special_tokens);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

}  // namespace sluice::tok
