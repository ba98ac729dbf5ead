#include "embed_workers.hpp"

#include <algorithm>
#include <exception>
#include <limits>
#include <numeric>

#include <fmt/format.h>

#include "io/output_format.hpp"

namespace sluice {

EmbedWorkers::EmbedWorkers(std::shared_ptr<Model> model, std::shared_ptr<const Tokenizer> tokenizer, Config config,
                           std::function<void()> notify)
    : model_(std::move(model)),
      tokenizer_(std::move(tokenizer)),
      config_(std::move(config)),
      notify_(std::move(notify)),
      // The loop bounds what it pushes (max_in_flight_*), so this queue never blocks it.
      input_(std::numeric_limits<std::size_t>::max()),
      // Two batches: one being embedded, one ready, so the model never waits on tokenising.
      batches_(2) {}

EmbedWorkers::~EmbedWorkers() {
  abort();
  join();
}

void EmbedWorkers::start() {
  tokenizer_thread_ = std::thread([this] { tokenizer_main(); });
  inference_thread_ = std::thread([this] { inference_main(); });
}

void EmbedWorkers::push(WorkItem&& item) { input_.push(std::move(item)); }

void EmbedWorkers::finish_input() { input_.close(); }

void EmbedWorkers::abort() {
  input_.close_and_clear();
  batches_.close_and_clear();
}

std::vector<WorkItem> EmbedWorkers::take_results() {
  std::lock_guard lock(results_mu_);
  std::vector<WorkItem> out;
  out.swap(results_);
  return out;
}

bool EmbedWorkers::finished() const {
  std::lock_guard lock(const_cast<std::mutex&>(results_mu_));
  return finished_;
}

void EmbedWorkers::join() {
  if (tokenizer_thread_.joinable()) tokenizer_thread_.join();
  if (inference_thread_.joinable()) inference_thread_.join();
}

void EmbedWorkers::tokenizer_main() {
  // Records gather in a window (cut by the loop at fixed record counts, so windows are the
  // same on every run); a full window is sorted by length when a token budget is set, cut
  // into batches, and sent to the model. The loop restores input order afterwards.
  std::vector<WorkItem> window;
  auto flush_window = [&] {
    if (window.empty()) return;
    std::vector<std::size_t> order(window.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    if (config_.max_batch_tokens > 0) {
      std::stable_sort(order.begin(), order.end(),
                       [&](std::size_t a, std::size_t b) { return window[a].tokens < window[b].tokens; });
    }
    std::vector<WorkItem> batch;
    std::size_t longest = 0;
    for (std::size_t i : order) {
      WorkItem& item = window[i];
      const std::size_t len = padded_length(item.tokens);
      std::size_t with_it = std::max(longest, len);
      const bool full = !batch.empty() && (batch.size() >= config_.batch_size ||
                                           (config_.max_batch_tokens > 0 &&
                                            (batch.size() + 1) * with_it > config_.max_batch_tokens));
      if (full) {
        batches_.push(std::move(batch));  // false only after abort: the batch is dropped
        batch = {};
        with_it = len;
      }
      batch.push_back(std::move(item));
      longest = with_it;
    }
    if (!batch.empty()) batches_.push(std::move(batch));
    window.clear();
  };
  for (;;) {
    std::optional<WorkItem> item = input_.pop();
    if (!item) break;  // closed and drained
    try {
      Encoding enc = tokenizer_->encode(item->text);
      item->tokens = static_cast<std::uint32_t>(enc.ids.size());
      item->truncated = enc.truncated();
      item->ids = std::move(enc.ids);
      item->type_ids = std::move(enc.type_ids);
    } catch (const std::exception& e) {
      item->error = ErrorInfo{ErrorCode::tokenizer_error, fmt::format("tokenizer failed: {}", e.what()), {}, {}};
    }
    std::string().swap(item->text);  // not needed any more
    const bool last = item->closes_window;
    window.push_back(std::move(*item));
    if (last) flush_window();
  }
  flush_window();
  batches_.close();
}

std::size_t EmbedWorkers::padded_length(std::size_t tokens) const {
  const std::size_t m = std::max<std::size_t>(config_.length_multiple, 1);
  return (std::max<std::size_t>(tokens, 1) + m - 1) / m * m;
}

void EmbedWorkers::inference_main() {
  while (auto batch = batches_.pop()) {
    run_batch(*batch);
    {
      std::lock_guard lock(results_mu_);
      for (auto& item : *batch) results_.push_back(std::move(item));
    }
    notify_();
  }
  {
    std::lock_guard lock(results_mu_);
    finished_ = true;
  }
  notify_();
}

bool EmbedWorkers::embed_items(std::vector<WorkItem*>& items, std::vector<float>& out, ErrorInfo& error) {
  TokenBatch tb;
  tb.batch = static_cast<std::uint32_t>(items.size());
  std::uint32_t seq = 1;
  for (auto* it : items) seq = std::max<std::uint32_t>(seq, it->tokens);
  // Lengths rounded to a few shapes keep allocator and kernel caches small over a long run.
  seq = static_cast<std::uint32_t>(padded_length(seq));
  tb.seq_len = seq;
  const std::size_t n = std::size_t{tb.batch} * seq;
  const std::int64_t pad = tokenizer_->pad_id();
  tb.ids.assign(n, pad);
  tb.attention_mask.assign(n, 0);
  tb.type_ids.assign(n, 0);
  for (std::size_t r = 0; r < items.size(); ++r) {
    const auto& it = *items[r];
    const std::size_t base = r * seq;
    for (std::size_t c = 0; c < it.ids.size(); ++c) {
      tb.ids[base + c] = it.ids[c];
      tb.attention_mask[base + c] = 1;
      tb.type_ids[base + c] = c < it.type_ids.size() ? it.type_ids[c] : 0;
    }
  }
  const std::size_t dims = model_->info().dimensions;
  out.resize(items.size() * dims);
  try {
    model_->embed(tb, out);
    return true;
  } catch (const Error& e) {
    error = ErrorInfo{e.code(), e.what(), {}, e.detail()};
  } catch (const std::exception& e) {
    error = ErrorInfo{ErrorCode::model_error, fmt::format("model inference failed: {}", e.what()), {}, {}};
  }
  return false;
}

void EmbedWorkers::run_batch(std::vector<WorkItem>& batch) {
  std::vector<WorkItem*> good;
  good.reserve(batch.size());
  for (auto& item : batch) {
    if (!item.error) good.push_back(&item);
  }
  if (good.empty()) return;

  const std::size_t dims = model_->info().dimensions;
  std::vector<float> out;
  ErrorInfo error;
  auto deliver = [&](std::vector<WorkItem*>& items) {
    for (std::size_t r = 0; r < items.size(); ++r) {
      WorkItem& it = *items[r];
      std::span<const float> v(out.data() + r * dims, dims);
      if (config_.format_output) {
        append_output_line(it.output_line, std::string_view(it.json).substr(0, it.prefix_length), it.empty_object,
                           config_.output_field, v);
        std::string().swap(it.json);
      } else {
        it.embedding.assign(v.begin(), v.end());
      }
      std::vector<std::int32_t>().swap(it.ids);
      std::vector<std::int32_t>().swap(it.type_ids);
    }
  };

  if (embed_items(good, out, error)) {
    deliver(good);
    return;
  }
  // The batch failed: embed each record alone so only the records that fail by themselves
  // are reported, and the rest go on.
  for (WorkItem* item : good) {
    std::vector<WorkItem*> one{item};
    ErrorInfo one_error;
    if (embed_items(one, out, one_error)) {
      deliver(one);
    } else {
      one_error.message =
          fmt::format("{} (the record fails on its own; it was {} tokens long)", one_error.message, item->tokens);
      item->error = std::move(one_error);
    }
  }
}

}  // namespace sluice
