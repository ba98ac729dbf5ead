#pragma once
/// Tokenizers loaded from a Hugging Face `tokenizer.json`, producing exactly the ids that the
/// Hugging Face `tokenizers` library's `encode` gives with that file's own settings.
///
/// A tokenizer is a chain of components, as in the file: added/special tokens, normalizer,
/// pre-tokenizer, model, truncation, post-processor. Supported today (docs/tokenizers.md):
///   normalizers      BertNormalizer, Lowercase, NFD, NFKD, NFC, NFKC, StripAccents, Replace
///                    (string, or a regular expression of the common subset), Prepend, Strip,
///                    Precompiled (SentencePiece's charsmap), Sequence;
///   pre-tokenizers   BertPreTokenizer, Whitespace, WhitespaceSplit, ByteLevel, Metaspace, Split,
///                    Punctuation, Digits, CharDelimiterSplit, Sequence;
///   models           WordPiece, BPE (byte-level or not; no dropout), Unigram;
///   post-processors  TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence.
/// Any other type or setting is refused at load time. The file's "padding" is not applied
/// (batches are padded by the caller, see pad_id()) and its "decoder" is not used.
///
/// Identical ids to Hugging Face `tokenizers` 0.22 are checked on an 8,000-string corpus for
/// BERT, RoBERTa, ALBERT and XLM-RoBERTa layouts, offsets on a subset and on variants, and the
/// character classes on every Unicode code point (tests/data/tokenizer/README.md).

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

/// The result of encoding one text.
struct Encoding {
  std::vector<std::int32_t> ids;       ///< token ids, special tokens included
  std::vector<std::int32_t> type_ids;  ///< segment ids (all 0 for a single sequence)
  /// Byte range [first, second) of each token in the original text; special tokens get {0, 0}.
  /// The ranges are Hugging Face's (its character offsets, as bytes), quirks included: a
  /// byte-level token inside a multi-byte character covers the whole character, trim_offsets
  /// can leave an empty range, and SentencePiece normalization may shift ranges by a character.
  std::vector<std::pair<std::uint32_t, std::uint32_t>> offsets;
  /// Tokens the text had before truncation, special tokens included (== ids.size() when not
  /// truncated). A long text truncated on the right may be tokenised only as far as needed
  /// (Tokenizer::encode): then this is a lower bound and `length_is_lower_bound` is set.
  std::size_t untruncated_length = 0;
  bool length_is_lower_bound = false;
  bool truncated() const noexcept { return untruncated_length > ids.size(); }
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  /// Loads `tokenizer.json`. Throws sluice::Error (invalid_model) naming the file and the
  /// unsupported or malformed part.
  static std::unique_ptr<Tokenizer> from_file(const std::filesystem::path& path);
  /// Same, from the file's text.
  static std::unique_ptr<Tokenizer> from_json(std::string_view json);

  /// Encodes one sequence (UTF-8; the caller guarantees valid UTF-8: an invalid byte is read
  /// as U+FFFD, which BertNormalizer drops). Applies the file's truncation, or the one set with
  /// set_max_length(), and the post-processor (special tokens only when add_special_tokens).
  /// Throws only std::bad_alloc; texts must be under 4 GiB (offsets are 32-bit). Thread: any
  /// (const; scratch buffers are per thread, so a warm thread allocates only the Encoding).
  /// Memory: a text truncated on the right is tokenised a growing prefix at a time until it
  /// has more tokens than are kept, and a long text read whole a segment at a time, where the
  /// tokenizer's parts make that give the same tokens (cuts before whitespace in BERT,
  /// RoBERTa/GPT-2 and SentencePiece-style folders, and between other characters for BERT and
  /// the GPT-2 split; docs/tokenizers.md): working memory then follows the tokens, not the text.
  virtual Encoding encode(std::string_view text, bool add_special_tokens = true) const = 0;

  /// Encodes all of `text`, without truncation, as windows of at most `max_length` tokens
  /// each, special tokens included in every window; each window after the first begins with
  /// the last `stride` text tokens of the one before. These are the encodings Hugging Face
  /// gives with truncation(max_length, stride) and return_overflowing_tokens: the first one
  /// and its overflows. A text that fits gives one window. Throws std::invalid_argument when
  /// max_length leaves no room past the special tokens and the stride. Thread: any.
  virtual std::vector<Encoding> encode_windows(std::string_view text, std::size_t max_length,
                                               std::size_t stride) const = 0;
  /// The number of tokens encode() gives `text` without truncation, special tokens included
  /// when add_special_tokens, without keeping them: a long text is tokenised a segment at a
  /// time where the tokenizer's parts make that exact, so memory follows a segment, not the
  /// text. Thread: any.
  virtual std::size_t count_tokens(std::string_view text, bool add_special_tokens = true) const = 0;
  /// Caps the encoded length, special tokens included (truncation "longest_first", right side;
  /// replaces the file's truncation). Not thread-safe: call before encoding starts.
  virtual void set_max_length(std::size_t max_length) = 0;
  /// The cap, from set_max_length() or the file's "truncation"; none when neither.
  virtual std::optional<std::size_t> max_length() const = 0;

  /// One more than the largest id (model vocabulary and added tokens).
  virtual std::size_t vocab_size() const = 0;
  /// The id of a token of the vocabulary or an added token.
  virtual std::optional<std::int32_t> token_to_id(std::string_view token) const = 0;
  /// The token of an id (with its "##" prefix if it has one).
  virtual std::optional<std::string> id_to_token(std::int32_t id) const = 0;
  /// Id used for padding (the file's padding settings, else "[PAD]"/"<pad>", else 0).
  virtual std::int32_t pad_id() const = 0;
};

}  // namespace sluice
