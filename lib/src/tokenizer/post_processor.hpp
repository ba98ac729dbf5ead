#pragma once
// Post-processors from tokenizer.json: add special tokens and set type ids.
// Thread: any (const).

#include <cstdint>
#include <memory>
#include <vector>

#include <simdjson.h>

#include "wordpiece.hpp"

namespace sluice::tok {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  /// Tokens added to a single sequence.
  virtual std::size_t added_tokens() const = 0;
  /// Adds the special tokens around a single sequence, and its type ids.
  virtual void process(std::vector<Token>& tokens, std::vector<std::int32_t>& type_ids) const = 0;
};

/// TemplateProcessing ("single" template), BertProcessing and RobertaProcessing (single
/// sequence: cls, tokens, sep) all reduce to a template of special ids and the sequence.
class TemplateProcessor : public PostProcessor {
 public:
  struct Piece {
    bool is_sequence = false;
    std::vector<std::int32_t> ids;  // the special token's ids
    std::int32_t type_id = 0;
  };
  explicit TemplateProcessor(std::vector<Piece> single) : single_(std::move(single)) {}
  std::size_t added_tokens() const override;
  void process(std::vector<Token>& tokens, std::vector<std::int32_t>& type_ids) const override;

 private:
  std::vector<Piece> single_;
};

/// Builds the post-processor described by `e` (null: none). Throws sluice::Error for
/// unsupported types.
std::unique_ptr<PostProcessor> make_post_processor(simdjson::dom::element e, const Vocab& vocab);

}  // namespace sluice::tok
