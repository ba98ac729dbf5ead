#pragma once
// The tokenizer thread and the inference threads, fed from the loop through queues.
//
// Thread contract: push(), finish_input(), abort() and take_results() are called from the
// loop thread; `notify` is called from the inference threads (it must be uv_async_send or
// equally thread-safe). Workers own only what was moved into them.
//
// With Config::inference_threads > 1 (a model whose concurrent_embed() is true), that many
// threads take batches from one queue, in order, and run Model::embed at the same time;
// their results arrive in completion order, which the loop puts back in input order.

#include <chrono>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <sluice/model.hpp>
#include <sluice/pipeline.hpp>
#include <sluice/tokenizer.hpp>
#include <sluice/vector_format.hpp>

#include "bounded_queue.hpp"
#include "work_item.hpp"

namespace sluice {

class EmbedWorkers {
 public:
  struct Config {
    std::size_t batch_size = 32;        // records per batch, at most
    std::size_t max_batch_tokens = 0;   // padded tokens per batch, at most; 0: no budget, no sorting
    bool format_output = true;  // format JSONL output lines on the inference thread
    std::string output_field = "embedding";
    std::string prompt;             // prepended to each text before tokenising
    std::size_t dimensions = 0;     // keep the first N values; 0: all
    bool renormalize = false;       // L2-normalise again after cutting to `dimensions`
    VectorFormat vector_format;
    std::string text_field = "text";  // named in errors
    LongInput long_input = LongInput::truncate;
    std::size_t chunk_tokens = 0;     // window length with --long-input chunk
    std::size_t chunk_overlap = 0;
    bool chunk_document = false;      // also one vector per record from its windows
    std::size_t inference_threads = 1;  // concurrent model calls (ThreadLayout::workers)
  };

  EmbedWorkers(std::shared_ptr<Model> model, std::shared_ptr<const Tokenizer> tokenizer, Config config,
               std::function<void()> notify);
  ~EmbedWorkers();

  void start();
  /// Never blocks: the loop bounds what it pushes.
  void push(WorkItem&& item);
  /// Items gather until one with closes_window arrives (or input ends); the window is then
  /// sorted by length (with a token budget) and cut into batches. No more items: flush the last batch and let the
  /// threads end.
  void finish_input();
  /// Drop everything queued and end the threads after the batch in hand.
  void abort();
  /// Results so far, in completion order (not input order).
  std::vector<WorkItem> take_results();
  /// What the model was given so far (RunSummary's model_* fields). Any thread.
  struct ModelStats {
    std::uint64_t calls = 0;
    std::uint64_t tokens = 0;         // real tokens
    std::uint64_t padded_tokens = 0;  // rows x padded length
    double busy_s = 0;                // inside Model::embed
  };
  ModelStats model_stats() const;
  /// What the tokenizer has finished so far: the input bytes of its records (end_offset -
  /// offset) and the tokens they will give the model. Progress estimates the work left from
  /// it. Any thread.
  struct Tokenized {
    std::uint64_t bytes = 0;
    std::uint64_t tokens = 0;
  };
  Tokenized tokenized() const;
  /// Whether every thread has ended (all results are then in take_results()).
  bool finished() const;
  void join();

 private:
  void tokenizer_main();
  void inference_main();
  void run_batch(std::vector<WorkItem>& batch);
  // A model row: one record's ids, or one window of a long record.
  struct Row {
    const std::vector<std::int32_t>* ids;
    const std::vector<std::int32_t>* type_ids;
    bool has_prompt;  // the row starts with the prompt (first window)
    std::string_view text;  // the record's text, for a model that wants_texts()
  };
  void make_chunks(WorkItem& item) const;
  static void add_rows(WorkItem& item, std::vector<Row>& rows);
  bool embed_rows(const std::vector<Row>& rows, std::vector<float>& out, ErrorInfo& error);

  std::shared_ptr<Model> model_;
  std::uint32_t prompt_tokens_ = 0;  // leading tokens pooling leaves out (include_prompt false)
  std::size_t no_text_tokens_ = 0;   // tokens of an empty text (the prompt and special tokens)
  std::shared_ptr<const Tokenizer> tokenizer_;
  Config config_;
  std::function<void()> notify_;

  BoundedQueue<WorkItem> input_;
  BoundedQueue<std::vector<WorkItem>> batches_;
  std::mutex results_mu_;
  std::vector<WorkItem> results_;
  std::size_t running_ = 0;  // inference threads not yet ended; guarded by results_mu_
  bool finished_ = false;    // guarded by results_mu_
  mutable std::mutex stats_mu_;
  ModelStats stats_;       // guarded by stats_mu_
  std::atomic<bool> aborted_{false};  // abort() was called: no further model call starts
  std::atomic<std::uint64_t> tokenized_bytes_{0};
  std::atomic<std::uint64_t> tokenized_tokens_{0};

  std::thread tokenizer_thread_;
  std::vector<std::thread> inference_threads_;
};

}  // namespace sluice
