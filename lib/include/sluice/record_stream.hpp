#pragma once
/// RecordStream: a lazy, composable stream of records (filter, map, limit, batch).
///
/// \code
///   auto s = RecordStream::from_jsonl("corpus.jsonl")
///                .filter([](const Record& r) { return r.json.size() < 10000; })
///                .map([](Record r) {  // from_jsonl leaves text unset: read the field
///                  r.text = "passage: " + string_field(r, "text").value_or("");
///                  return r;
///                })
///                .limit(1000);
///   for (auto& batch : std::move(s).batch(32)) { ... }
/// \endcode
///
/// Nothing is read until a record is asked for; each operator holds at most one record
/// (batch() holds one batch). Only collect() materialises, and it is O(n) in memory.

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <sluice/record.hpp>
#include <sluice/source.hpp>

namespace sluice {

template <typename T>
class PullIterator;

/// Single pass; move-only. Thread: one at a time (the stream has no locks).
class RecordStream {
 public:
  using Next = std::function<std::optional<Record>()>;

  explicit RecordStream(Next next) : next_(std::move(next)) {}

  /// Reads a JSONL file lazily, one line per record (blank lines skipped, `text` unset).
  /// Throws sluice::Error (io_error) when the file cannot be opened; a line longer than
  /// `max_record_bytes` is yielded with empty json, so the pipeline reports it.
  static RecordStream from_jsonl(const std::filesystem::path& path, std::size_t max_record_bytes = 16u << 20);
  /// Pulls batches from a Source as records are asked for.
  static RecordStream from_source(std::shared_ptr<Source> source, std::size_t batch_size = 256);
  /// Records held in memory (tests, small inputs).
  static RecordStream from_records(std::vector<Record> records);

  /// Keeps the records for which `keep` returns true.
  RecordStream filter(std::function<bool(const Record&)> keep) &&;
  /// Replaces each record with `fn(record)`.
  RecordStream map(std::function<Record(Record)> fn) &&;
  /// Stops after `n` records; reads nothing beyond them.
  RecordStream limit(std::size_t n) &&;

  /// The next record, or nullopt at the end.
  std::optional<Record> next() { return next_ ? next_() : std::nullopt; }

  /// Batches of up to `size` records (the last may be shorter).
  class Batches {
   public:
    std::optional<std::vector<Record>> next();
    PullIterator<std::vector<Record>> begin();
    std::default_sentinel_t end() { return {}; }

   private:
    friend class RecordStream;
    Batches(Next next, std::size_t size) : next_(std::move(next)), size_(size) {}
    Next next_;
    std::size_t size_;
  };
  Batches batch(std::size_t size) &&;

  /// Adapts the stream to the Source protocol, to feed a Pipeline.
  std::unique_ptr<Source> into_source() &&;

  /// Every remaining record in a vector. O(n) memory: for small inputs and tests only.
  std::vector<Record> collect() &&;

  PullIterator<Record> begin();
  std::default_sentinel_t end() { return {}; }

 private:
  Next next_;
};

/// Input iterator over anything with `std::optional<T> next()`.
template <typename T>
class PullIterator {
 public:
  using value_type = T;
  using difference_type = std::ptrdiff_t;

  explicit PullIterator(std::function<std::optional<T>()> pull) : pull_(std::move(pull)) { ++*this; }
  T& operator*() { return *current_; }
  T* operator->() { return &*current_; }
  PullIterator& operator++() {
    current_ = pull_();
    return *this;
  }
  void operator++(int) { ++*this; }
  bool operator==(std::default_sentinel_t) const { return !current_.has_value(); }

 private:
  std::function<std::optional<T>()> pull_;
  std::optional<T> current_;
};

}  // namespace sluice
