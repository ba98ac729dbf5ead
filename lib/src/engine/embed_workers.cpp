#include "embed_workers.hpp"

#include <algorithm>
#include <exception>
#include <limits>

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
  std::vector<WorkItem> batch;
  batch.reserve(config_.batch_size);
  auto flush = [&] {
    if (batch.empty()) return;
    std::vector<WorkItem> full;
    full.swap(batch);
    batch.reserve(config_.batch_size);
    batches_.push(std::move(full));  // returns false only after abort: the batch is dropped
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
    const bool last = item->closes_batch;
    batch.push_back(std::move(*item));
    if (last || batch.size() >= config_.batch_size) flush();
  }
  flush();
  batches_.close();
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
