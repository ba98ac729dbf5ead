#include "embed_workers.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>

#include <fmt/format.h>

#include "batch_plan.hpp"
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
      // Batches ready beside the ones being embedded (at least two), so no inference thread
      // waits on tokenising.
      batches_(std::max<std::size_t>(2, config_.inference_threads)) {
  config_.inference_threads = std::max<std::size_t>(1, config_.inference_threads);
  // What a text that normalises to nothing encodes to: the prompt (if any) and special tokens.
  no_text_tokens_ = tokenizer_->encode(config_.prompt).ids.size();
  // A model that pools without the prompt is told how many leading tokens are the prompt,
  // counted as sentence-transformers counts them: the prompt's encoding less its final
  // special token.
  if (!config_.prompt.empty() && !model_->info().include_prompt) {
    prompt_tokens_ = static_cast<std::uint32_t>(no_text_tokens_ > 0 ? no_text_tokens_ - 1 : 0);
  }
}

EmbedWorkers::~EmbedWorkers() {
  abort();
  join();
}

void EmbedWorkers::start() {
  running_ = config_.inference_threads;
  tokenizer_thread_ = std::thread([this] { tokenizer_main(); });
  for (std::size_t i = 0; i < config_.inference_threads; ++i) {
    inference_threads_.emplace_back([this] { inference_main(); });
  }
}

void EmbedWorkers::push(WorkItem&& item) { input_.push(std::move(item)); }

void EmbedWorkers::finish_input() { input_.close(); }

void EmbedWorkers::abort() {
  aborted_.store(true);
  model_->interrupt();  // a remote backend's calls under way return now
  input_.close_and_clear();
  batches_.close_and_clear();
}

EmbedWorkers::ModelStats EmbedWorkers::model_stats() const {
  std::lock_guard lock(stats_mu_);
  return stats_;
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
  for (std::thread& t : inference_threads_) {
    if (t.joinable()) t.join();
  }
}

void EmbedWorkers::tokenizer_main() {
  // Records gather in a window (cut by the loop at fixed record counts, so windows are the
  // same on every run); a full window is sorted by length when a token budget is set, cut
  // into batches, and sent to the model. The loop restores input order afterwards.
  std::vector<WorkItem> window;
  auto flush_window = [&] {
    if (window.empty()) return;
    std::vector<std::uint32_t> lengths(window.size());
    std::vector<std::uint32_t> rows(window.size());
    for (std::size_t i = 0; i < window.size(); ++i) {
      lengths[i] = window[i].longest_row();
      rows[i] = window[i].rows();
    }
    const WindowPlan plan = plan_window(lengths, BatchLimits{config_.batch_size, config_.max_batch_tokens}, rows);
    for (const PlannedBatch& b : plan.batches) {
      std::vector<WorkItem> batch;
      batch.reserve(b.rows);
      for (std::size_t i = b.first; i < b.first + b.rows; ++i) batch.push_back(std::move(window[plan.order[i]]));
      batches_.push(std::move(batch));  // false only after abort: the batch is dropped
    }
    window.clear();
  };
  for (;;) {
    std::optional<WorkItem> item = input_.pop();
    if (!item) break;  // closed and drained
    std::size_t text_end = 0;  // for a model that wants_texts(): what of the text it gets
    try {
      if (!config_.prompt.empty()) item->text.insert(0, config_.prompt);
      text_end = item->text.size();
      if (config_.long_input == LongInput::chunk) {
        make_chunks(*item);
      } else {
        Encoding enc = tokenizer_->encode(item->text);
        if (enc.ids.size() <= no_text_tokens_ && !enc.truncated()) {
          // Only zero-width or control characters, say: the vector would be that of an empty text.
          item->error = ErrorInfo{ErrorCode::empty_text,
                                  fmt::format("field \"{}\" has no token to embed once normalised (only characters "
                                              "the tokenizer removes, such as zero-width spaces)",
                                              config_.text_field),
                                  config_.text_field,
                                  {}};
        }
        if (enc.truncated() && model_->wants_texts()) {
          // A remote API gets the text the tokens came from: cut after the last token kept.
          std::size_t end = 0;
          for (const auto& [from, to] : enc.offsets) end = std::max<std::size_t>(end, to);
          text_end = std::min(end, item->text.size());
        }
        item->tokens = static_cast<std::uint32_t>(enc.ids.size());
        item->truncated = enc.truncated();
        item->ids = std::move(enc.ids);
        item->type_ids = std::move(enc.type_ids);
        if (item->truncated && config_.long_input == LongInput::fail) {
          item->error = ErrorInfo{ErrorCode::text_too_long,
                                  fmt::format("the text is {}{} tokens, more than the model's {} (embed it in "
                                              "pieces with --long-input chunk, or cut it with --long-input truncate)",
                                              enc.length_is_lower_bound ? "at least " : "", enc.untruncated_length,
                                              model_->info().max_tokens),
                                  config_.text_field,
                                  {}};
        }
      }
    } catch (const std::exception& e) {
      item->error = ErrorInfo{ErrorCode::tokenizer_error, fmt::format("tokenizer failed: {}", e.what()), {}, {}};
    }
    if (!model_->wants_texts()) {
      std::string().swap(item->text);  // not needed any more
    } else if (!item->error) {
      item->text.resize(text_end);
    }
    // Counts for the progress estimate, read without a lock: the two may be a record apart.
    item->model_tokens = item->error ? 0 : item->tokens;
    tokenized_bytes_.fetch_add(item->end_offset - item->offset, std::memory_order_relaxed);
    tokenized_tokens_.fetch_add(item->model_tokens, std::memory_order_relaxed);
    const bool last = item->closes_window;
    window.push_back(std::move(*item));
    if (last) flush_window();
  }
  flush_window();
  batches_.close();
}

EmbedWorkers::Tokenized EmbedWorkers::tokenized() const {
  return {tokenized_bytes_.load(std::memory_order_relaxed), tokenized_tokens_.load(std::memory_order_relaxed)};
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
    finished_ = --running_ == 0;
  }
  notify_();
}

void EmbedWorkers::make_chunks(WorkItem& item) const {
  const std::string_view text = item.text;
  std::vector<Encoding> windows = tokenizer_->encode_windows(text, config_.chunk_tokens, config_.chunk_overlap);
  // Byte ranges of the text each window covers (special tokens have empty ranges), then
  // converted to code points in one pass over the text.
  const std::size_t prompt = config_.prompt.size();
  std::vector<std::uint64_t> points;
  item.chunks.resize(windows.size());
  std::uint32_t total = 0;
  for (std::size_t w = 0; w < windows.size(); ++w) {
    Chunk& c = item.chunks[w];
    std::uint64_t first = text.size(), last = prompt;
    for (const auto& [b, e] : windows[w].offsets) {
      if (e <= b) continue;
      first = std::min<std::uint64_t>(first, std::max<std::uint64_t>(b, prompt));
      last = std::max<std::uint64_t>(last, e);
    }
    if (first > last) first = last;
    c.char_start = first;
    c.char_end = last;
    points.push_back(first);
    points.push_back(last);
    total += static_cast<std::uint32_t>(windows[w].ids.size());
    c.ids = std::move(windows[w].ids);
    c.type_ids = std::move(windows[w].type_ids);
  }
  std::sort(points.begin(), points.end());
  points.erase(std::unique(points.begin(), points.end()), points.end());
  std::vector<std::uint64_t> chars(points.size());
  std::uint64_t count = 0, at = prompt;
  for (std::size_t i = 0; i < points.size(); ++i) {
    for (; at < points[i]; ++at) count += (static_cast<unsigned char>(text[at]) & 0xC0) != 0x80;
    chars[i] = count;
  }
  auto to_chars = [&](std::uint64_t byte) {
    return chars[static_cast<std::size_t>(std::lower_bound(points.begin(), points.end(), byte) - points.begin())];
  };
  for (Chunk& c : item.chunks) {
    c.char_start = to_chars(c.char_start);
    c.char_end = to_chars(c.char_end);
  }
  item.tokens = total;
}

bool EmbedWorkers::embed_rows(const std::vector<Row>& rows, std::vector<float>& out, ErrorInfo& error) {
  const std::size_t dims = model_->info().dimensions;
  out.resize(rows.size() * dims);
  const std::int64_t pad = tokenizer_->pad_id();
  // Rows go to the model in groups within the batch limits: a batch planned for the model
  // fits in one call; the many windows of one long record take several.
  std::size_t begin = 0;
  while (begin < rows.size()) {
    // The many windows of one long record take many calls: an abort ends them after the
    // call in progress (its results are dropped), not after the record.
    if (aborted_.load()) {
      error = ErrorInfo{ErrorCode::internal, "the run was stopped", {}, {}};
      return false;
    }
    std::size_t end = begin;
    std::size_t seq = 1;
    while (end < rows.size()) {
      const std::size_t with = std::max(seq, padded_length(rows[end].ids->size()));
      const std::size_t n = end - begin + 1;
      if (end > begin && (n > std::max<std::size_t>(config_.batch_size, 1) ||
                          (config_.max_batch_tokens > 0 && n * with > config_.max_batch_tokens))) {
        break;
      }
      seq = with;
      ++end;
    }
    TokenBatch tb;
    tb.batch = static_cast<std::uint32_t>(end - begin);
    tb.seq_len = static_cast<std::uint32_t>(seq);  // a length plan_window() also plans
    const std::size_t n = std::size_t{tb.batch} * seq;
    tb.ids.assign(n, pad);
    tb.attention_mask.assign(n, 0);
    tb.type_ids.assign(n, 0);
    if (prompt_tokens_ > 0) tb.prompt_tokens.assign(tb.batch, 0);
    if (model_->wants_texts()) {
      tb.texts.reserve(tb.batch);
      for (std::size_t r = 0; r < tb.batch; ++r) tb.texts.push_back(rows[begin + r].text);
    }
    std::uint64_t real_tokens = 0;
    for (std::size_t r = 0; r < tb.batch; ++r) {
      const Row& row = rows[begin + r];
      const std::size_t base = r * seq;
      real_tokens += row.ids->size();
      for (std::size_t c = 0; c < row.ids->size(); ++c) {
        tb.ids[base + c] = (*row.ids)[c];
        tb.attention_mask[base + c] = 1;
        tb.type_ids[base + c] = c < row.type_ids->size() ? (*row.type_ids)[c] : 0;
      }
      if (prompt_tokens_ > 0 && row.has_prompt) {
        tb.prompt_tokens[r] = std::min<std::uint32_t>(prompt_tokens_, static_cast<std::uint32_t>(row.ids->size()));
      }
    }
    const auto t0 = std::chrono::steady_clock::now();
    bool ok = true;
    try {
      model_->embed(tb, std::span<float>(out.data() + begin * dims, tb.batch * dims));
    } catch (const Error& e) {
      error = ErrorInfo{e.code(), e.what(), {}, e.detail()};
      ok = false;
    } catch (const std::exception& e) {
      error = ErrorInfo{ErrorCode::model_error, fmt::format("model inference failed: {}", e.what()), {}, {}};
      ok = false;
    }
    {
      // A failed call counts too: the model computed it.
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::lock_guard lock(stats_mu_);
      ++stats_.calls;
      stats_.tokens += real_tokens;
      stats_.padded_tokens += n;
      stats_.busy_s += s;
    }
    if (!ok) return false;
    begin = end;
  }
  return true;
}

void EmbedWorkers::add_rows(WorkItem& item, std::vector<Row>& rows) {
  if (item.chunks.empty()) {
    rows.push_back(Row{&item.ids, &item.type_ids, true, item.text});
    return;
  }
  for (std::size_t c = 0; c < item.chunks.size(); ++c) {
    rows.push_back(Row{&item.chunks[c].ids, &item.chunks[c].type_ids, c == 0, {}});
  }
}

void EmbedWorkers::run_batch(std::vector<WorkItem>& batch) {
  std::vector<WorkItem*> good;
  good.reserve(batch.size());
  for (auto& item : batch) {
    if (!item.error) good.push_back(&item);
  }
  if (good.empty()) return;

  const std::size_t dims = model_->info().dimensions;
  const std::size_t keep = config_.dimensions > 0 ? std::min(config_.dimensions, dims) : dims;
  std::vector<float> out;
  std::vector<float> cut(keep);
  std::vector<float> doc(dims);
  // The leading `keep` values of v, back to unit length when the model normalises (Matryoshka).
  auto shaped = [&](std::span<const float> v) -> std::span<const float> {
    v = v.first(keep);
    if (keep == dims || !config_.renormalize) return v;
    double norm = 0;
    for (float x : v) norm += double(x) * x;
    const float scale = norm > 0 ? static_cast<float>(1.0 / std::sqrt(norm)) : 0.0f;
    for (std::size_t k = 0; k < keep; ++k) cut[k] = v[k] * scale;
    return cut;
  };
  auto deliver = [&](std::vector<WorkItem*>& items) {
    std::size_t row = 0;
    for (WorkItem* itp : items) {
      WorkItem& it = *itp;
      const std::string_view prefix = std::string_view(it.json).substr(0, it.prefix_length);
      if (it.chunks.empty()) {
        std::span<const float> v = shaped(std::span<const float>(out.data() + row * dims, dims));
        ++row;
        if (config_.format_output) {
          append_output_line(it.output_line, prefix, it.empty_object, config_.output_field, v, config_.vector_format);
        } else {
          it.embedding.assign(v.begin(), v.end());
        }
      } else {
        const std::size_t k = it.chunks.size();
        if (config_.chunk_document) {
          // One vector for the record: the windows' vectors weighted by their token counts,
          // normalised again when the model normalises.
          std::vector<double> acc(dims, 0.0);
          double weight = 0;
          for (std::size_t c = 0; c < k; ++c) {
            const double w = static_cast<double>(it.chunks[c].ids.size());
            weight += w;
            for (std::size_t d = 0; d < dims; ++d) acc[d] += w * out[(row + c) * dims + d];
          }
          double norm = 0;
          for (std::size_t d = 0; d < dims; ++d) {
            acc[d] /= weight;
            norm += acc[d] * acc[d];
          }
          const double scale = config_.renormalize && norm > 0 ? 1.0 / std::sqrt(norm) : 1.0;
          for (std::size_t d = 0; d < dims; ++d) doc[d] = static_cast<float>(acc[d] * scale);
          std::span<const float> v = shaped(doc);
          if (config_.format_output) {
            append_output_line(it.output_line, prefix, it.empty_object, config_.output_field, v,
                               config_.vector_format);
          } else {
            it.embedding.assign(v.begin(), v.end());
          }
        }
        for (std::size_t c = 0; c < k; ++c) {
          std::span<const float> v = shaped(std::span<const float>(out.data() + (row + c) * dims, dims));
          const Chunk& ch = it.chunks[c];
          if (config_.format_output) {
            std::string head = fmt::format("{{\"parent_line\":{},", it.line);
            if (!it.id_json.empty()) head += fmt::format("\"parent_id\":{},", it.id_json);
            head += fmt::format("\"chunk\":{},\"chunks\":{},\"start\":{},\"end\":{}", c, k, ch.char_start,
                                ch.char_end);
            append_output_line(it.output_line, head, false, config_.output_field, v, config_.vector_format);
          }
        }
        row += k;
      }
      if (config_.format_output) std::string().swap(it.json);  // a Sink gets the record's bytes
      std::vector<std::int32_t>().swap(it.ids);
      std::vector<std::int32_t>().swap(it.type_ids);
      std::vector<Chunk>().swap(it.chunks);
    }
  };

  std::vector<Row> rows;
  for (WorkItem* item : good) add_rows(*item, rows);
  ErrorInfo error;
  if (embed_rows(rows, out, error)) {
    deliver(good);
    return;
  }
  if (aborted_.load()) return;  // stopped: what is left is dropped
  if (error.code == ErrorCode::backend_unavailable || error.code == ErrorCode::cancelled) {
    // Not the records' fault (the backend is gone, or was interrupted by someone else than this
    // run): the run fails on it (pipeline release()) and a resume embeds them.
    if (error.code == ErrorCode::cancelled) {
      error = ErrorInfo{ErrorCode::backend_unavailable, "the model backend was interrupted", {}, {}};
    }
    for (WorkItem* item : good) item->error = error;
    return;
  }
  // The batch failed: embed each record alone so only the records that fail by themselves
  // are reported, and the rest go on. If the backend goes away meanwhile, the records left
  // share that error (the run fails on it) instead of each waiting on it in turn.
  std::optional<ErrorInfo> gone;
  for (WorkItem* item : good) {
    if (gone) {
      item->error = *gone;
      continue;
    }
    if (aborted_.load()) return;
    std::vector<WorkItem*> one{item};
    std::vector<Row> its_rows;
    add_rows(*item, its_rows);
    ErrorInfo one_error;
    if (embed_rows(its_rows, out, one_error)) {
      deliver(one);
    } else if (one_error.code == ErrorCode::backend_unavailable || one_error.code == ErrorCode::cancelled) {
      if (one_error.code == ErrorCode::cancelled) {
        one_error = ErrorInfo{ErrorCode::backend_unavailable, "the model backend was interrupted", {}, {}};
      }
      gone = one_error;
      item->error = std::move(one_error);
    } else {
      one_error.message =
          fmt::format("{} (the record fails on its own; it was {} tokens long)", one_error.message, item->tokens);
      item->error = std::move(one_error);
    }
  }
}

}  // namespace sluice
