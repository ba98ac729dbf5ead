#pragma once
// Reads a Hugging Face tokenizer.json into the components of a tokenizer.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "added_vocabulary.hpp"
#include "model.hpp"
#include "normalizer.hpp"
#include "post_processor.hpp"
#include "pre_tokenizer.hpp"

namespace sluice::tok {

struct TokenizerParts {
  std::unique_ptr<Normalizer> normalizer;       ///< null: none
  std::unique_ptr<PreTokenizer> pre_tokenizer;  ///< null: none
  std::unique_ptr<Model> model;
  std::unique_ptr<PostProcessor> post_processor;  ///< null: none
  std::vector<AddedToken> added_tokens;
  std::optional<std::size_t> max_length;  ///< "truncation": max_length, special tokens included
  bool truncate_left = false;             ///< "truncation": direction "Left"
  std::optional<std::int32_t> pad_id;     ///< "padding": pad_id
  /// Whether cutting the text just before a run of whitespace changes none of the tokens
  /// before the cut: the normalizer looks at one character (or grapheme) at a time, the
  /// pre-tokenizer always ends a word at whitespace, and no added token holds whitespace. Then
  /// a text truncated on the right can be tokenised a prefix at a time (tokenizer.cpp).
  bool cut_at_whitespace_safe = false;
  /// The same, and the parts also give the text after such a cut the tokens it has in the whole
  /// text: no normalizer acts at a text's start or end (Prepend, Strip). Then a long text is
  /// tokenised a segment at a time, whatever its truncation (tokenizer.cpp).
  bool segment_at_whitespace_safe = false;
  /// BERT's layout: BertPreTokenizer (every punctuation character a word of its own) after
  /// normalizers of single characters (BertNormalizer, Lowercase, NF*, StripAccents). A cut just
  /// before an ASCII punctuation character no added token holds is then safe in both ways.
  bool cut_before_punctuation_safe = false;
  /// With cut_before_punctuation_safe and a WordPiece model: its max_input_chars_per_word. A
  /// word longer than that is one unknown token, so a prefix may be cut inside a run of more
  /// ASCII letters and digits than that (but the rest of the run is no word of its own: prefixes
  /// only). 0: no such cut.
  std::size_t wordpiece_max_chars = 0;
  /// With wordpiece_max_chars: the unknown token such a word becomes.
  std::string wordpiece_unk;
  /// A ByteLevel pre-tokenizer with GPT-2's pattern (letters, digits and other characters are
  /// words of their own) after cut-safe normalizers: a prefix may be cut where two ASCII
  /// non-space characters change class (not after an apostrophe, which starts "'s" and the
  /// like). Prefixes only: add_prefix_space would put a space before a segment.
  bool cut_at_class_change_safe = false;
};

/// For tests: false makes every Tokenizer tokenise a text whole, as if no cut were safe, so
/// that the prefix and segment paths can be compared with it. Process-wide; default true.
void set_long_text_cuts(bool enabled);
bool long_text_cuts();

/// Parses the text of a tokenizer.json. Throws sluice::Error (invalid_model) with a message
/// that starts with "tokenizer.json: " and names the unsupported or malformed part, e.g.
/// `tokenizer.json: unsupported normalizer type "Precompiled"`. Thread: any.
TokenizerParts parse_tokenizer_json(std::string_view json);

}  // namespace sluice::tok
