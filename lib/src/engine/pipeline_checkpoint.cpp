// Checkpoints: the fingerprint of everything that can change an output byte, the content
// hashes of the files, resume and what it refuses, and writing checkpoints.

#include "pipeline_impl.hpp"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "model/model_config.hpp"

namespace sluice {

namespace {

/// The files of a model folder that can change its vectors, by content: configuration,
/// tokenizer and weights (every .json, .txt, .model, .safetensors and .pt file, in every
/// module folder), in path order. Not the folder's own path: an identical copy elsewhere is
/// the same model.
std::string model_content_hash(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  if (dir.empty()) return "none";
  std::vector<fs::path> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string ext = p.extension().string();
    if (ext != ".json" && ext != ".txt" && ext != ".model" && ext != ".safetensors" && ext != ".pt") continue;
    if (!it->is_regular_file(ec)) continue;  // through links, as the loaders open them
    files.push_back(p);
  }
  std::sort(files.begin(), files.end());
  ContentHash all;
  for (const fs::path& p : files) {
    ContentHash one;
    const std::uint64_t size = fs::file_size(p, ec);
    std::string err = ec ? "cannot read its size" : hash_file_to(p.string(), size, one);
    const std::string rel = p.lexically_relative(dir).generic_string();
    all.update(rel);
    all.update(err.empty() ? one.hex() : "unreadable");
  }
  return fmt::format("{} files, {}", files.size(), all.hex());
}

}  // namespace

namespace {
std::string identity_with_hash(const ModelInfo& info, const std::string& hash) {
  return fmt::format("{} ({}), pooling {}, {}normalized, precision {}", info.family, hash, pooling_name(info.pooling),
                     info.normalize ? "" : "not ", precision_name(info.precision));
}
}  // namespace

std::string model_identity(const ModelInfo& info) { return identity_with_hash(info, model_content_hash(info.dir)); }

std::string Pipeline::Impl::compute_fingerprint() {
  // Everything that can change an output byte, one part per line so that a refused resume can
  // say what changed. The input is checked by content instead (verify_files_against).
  const ModelInfo& info = model_->info();
  // The threads of one model call can change a vector's last bits (how work is split inside
  // a product); how many calls run at once cannot.
  model_hash_ = model_content_hash(info.dir);
  const std::string runs_on =
      info.backend.empty()
          ? fmt::format("device {}, {} thread(s) a call", device_name(info.device), layout_.threads_per_worker)
          : fmt::format("on {}", info.backend);
  std::string model = fmt::format("model={} ({}), pooling {}, {}normalized, precision {}, {}", info.family,
                                  model_hash_, pooling_name(info.pooling), info.normalize ? "" : "not ",
                                  precision_name(info.precision), runs_on);
  std::string options = fmt::format(
      "options=text field \"{}\", output field \"{}\", batch size {}, max batch tokens {}, sort window {}, "
      "sort window bytes {}, max record bytes {}, on error {}, dead letter {}, prompt \"{}\", dimensions {}, output {} {}, "
      "long input {}",
      opt_.text_field, opt_.output_field, opt_.batch_size, opt_.max_batch_tokens, window_, opt_.sort_window_bytes,
      opt_.max_record_bytes,
      opt_.on_error == OnError::skip ? "skip" : "fail", opt_.dead_letter.empty() ? "none" : "a file",
      opt_.prompt, opt_.dimensions == 0 ? model_->info().dimensions : opt_.dimensions,
      to_string(opt_.vector_format.type), to_string(opt_.vector_format.encoding),
      opt_.long_input == LongInput::truncate ? std::string("truncate")
      : opt_.long_input == LongInput::fail
          ? std::string("fail")
          : fmt::format("chunk {} tokens, overlap {}, id field \"{}\"{}", chunk_tokens_, opt_.chunk_overlap,
                        opt_.id_field, opt_.chunk_document ? ", document vectors" : ""));
  return model + "\n" + options;
}

std::string Pipeline::Impl::hash_up_to(CheckpointState& state) {
  if (output_rereadable()) {
    if (std::string err = hash_file_to(*sink_->file(), state.output_offset, output_hash_); !err.empty()) return err;
    state.output_hash = output_hash_.hex();
  }
  if (dead_letter_rereadable()) {
    if (std::string err = hash_file_to(opt_.dead_letter, state.dead_letter_offset, dead_letter_hash_); !err.empty()) {
      return err;
    }
    state.dead_letter_hash = dead_letter_hash_.hex();
  }
  return {};
}

std::string Pipeline::Impl::save_checkpoint(CheckpointState& state) {
  std::string err = hash_up_to(state);
  return err.empty() ? write_checkpoint_file(opt_.checkpoint, state) : err;
}

void Pipeline::Impl::verify_files_against(const CheckpointState& state) {
  const std::string again = "; run without --resume to start again";
  auto refuse = [&](const std::string& what) {
    throw Error(ErrorCode::invalid_argument, fmt::format("{}: cannot resume: {}{}", checkpoint_name(), what, again));
  };
  // The counters agree with each other.
  if (state.completed + state.failed != state.records_done || state.truncated > state.completed) {
    refuse(fmt::format("its counters disagree ({} records done, {} embedded, {} failed, {} truncated): it was "
                       "edited or damaged",
                       state.records_done, state.completed, state.failed, state.truncated));
  }
  if (input_size_ > 0 && state.input_offset > input_size_) {
    refuse(fmt::format("it records input offset {}, past the end of {} ({} bytes)", state.input_offset, input_name_,
                       input_size_));
  }
  // The input: the source goes back to where the run had read, and says whether it can.
  if (state.records_done > 0) {
    if (state.input_position.empty()) {
      refuse(fmt::format("it records no position of {} to continue from (its records have no Record::position)",
                         input_name_));
    }
    try {
      source_->resume(state.input_position);
    } catch (const Error& e) {
      refuse(e.what());
    }
  }
  // The output and dead letters, up to the checkpoint's offsets; after a finished run, nothing
  // may follow them.
  auto verify = [&](const std::string& path, const char* what, std::uint64_t offset, const std::string& want,
                    ContentHash& hash, std::uint64_t lines) {
    std::error_code ec;
    const std::uint64_t size = std::filesystem::exists(path, ec) ? std::filesystem::file_size(path, ec) : 0;
    if (size < offset) {
      refuse(fmt::format("{} has {} bytes, fewer than the {} the checkpoint records: it was changed since", path, size,
                         offset));
    }
    if (std::string err = hash_file_to(path, offset, hash); !err.empty()) refuse(err);
    if (hash.hex() != want) {
      refuse(fmt::format("the first {} bytes of the {} {} are not those the checkpoint's run wrote: it was changed "
                         "since",
                         offset, what, path));
    }
    if (offset > 0 && hash.last_byte() != '\n') {
      refuse(fmt::format("{} offset {} is not at the end of a line of {}", what, offset, path));
    }
    if (lines != UINT64_MAX && hash.newlines() != lines) {
      refuse(fmt::format("the {} {} has {} lines before offset {}, and the checkpoint counts {} records there", what,
                         path, hash.newlines(), offset, lines));
    }
    if (state.finished && size > offset) {
      refuse(fmt::format("{} bytes were added to the {} {} after its run finished", size - offset, what, path));
    }
  };
  // One output line per embedded record, except with windows of a long text as lines of their own.
  const bool line_per_record = opt_.long_input != LongInput::chunk || opt_.chunk_document;
  if (output_rereadable()) {
    verify(*sink_->file(), "output", state.output_offset, state.output_hash, output_hash_,
           line_per_record ? state.completed : UINT64_MAX);
  }
  if (dead_letter_rereadable()) {
    verify(opt_.dead_letter, "dead-letter file", state.dead_letter_offset, state.dead_letter_hash, dead_letter_hash_,
           state.failed);
  }
}

SinkRun Pipeline::Impl::sink_run(bool resume, std::string position) const {
  const ModelInfo& info = model_->info();
  SinkRun run;
  run.pipeline_id = bus_.pipeline_id();
  run.fingerprint = fingerprint_;
  // Absolute: search finds the model from any folder.
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::absolute(info.dir, ec);
  run.model = info.dir.empty() ? info.family : ec ? info.dir.string() : dir.lexically_normal().string();
  run.model_family = info.family;
  run.model_identity = identity_with_hash(info, model_hash_);
  run.pooling = pooling_name(info.pooling);
  run.precision = precision_name(info.precision);
  run.dimensions = opt_.dimensions > 0 ? opt_.dimensions : info.dimensions;
  run.normalized = info.normalize;
  // The bus outlives the sink (both are the pipeline's); publishing is not part of describing
  // the run, hence the const_cast of this const method.
  run.publish = [bus = const_cast<EventBus*>(&bus_)](EventPayload payload) { bus->publish(std::move(payload)); };
  run.vector_format = opt_.vector_format;
  run.input = input_name_;
  run.resume = resume;
  run.position = std::move(position);
  run.loop = loop_;
  return run;
}

std::optional<CheckpointState> Pipeline::Impl::open_sink_and_read_checkpoint() {
  if (opt_.resume) {
    if (!checkpointing()) throw Error(ErrorCode::invalid_argument, "resuming needs a checkpoint file");
    if (std::optional<std::string> why = source_->resume_refusal()) {
      throw Error(ErrorCode::invalid_argument, fmt::format("cannot resume reading {}: {}", input_name_, *why));
    }
    if (sink_->wants_jsonl() && !sink_->file()) {  // standard output
      throw Error(ErrorCode::invalid_argument, "cannot resume writing to standard output");
    }
    if (!sink_checkpoints() && !own_jsonl_ && sink_->position().empty()) {
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("cannot resume writing to {}: it neither keeps the checkpoint nor can go back to a "
                              "position (Sink::keeps_checkpoint(), Sink::position())",
                              sink_->name()));
    }
  }
  if (sink_checkpoints()) {
    sink_->open(sink_run(opt_.resume, {}));
    if (!opt_.resume) return std::nullopt;
    std::optional<std::string> json = sink_->load_checkpoint();
    if (!json) return std::nullopt;  // nothing committed yet: start at the beginning
    auto state = checkpoint_from_json(*json);
    if (!state) {
      throw Error(ErrorCode::invalid_argument, fmt::format("{}: cannot resume: its checkpoint is damaged: {}",
                                                           sink_->name(), state.error().message));
    }
    return std::move(state.value());
  }
  // A sink that keeps no checkpoint is opened once the files were checked against it (start()).
  std::optional<CheckpointState> state;
  std::error_code ec;
  if (opt_.resume && std::filesystem::exists(opt_.checkpoint, ec)) state = read_checkpoint_file(opt_.checkpoint);
  return state;
}

bool Pipeline::Impl::load_resume_point(const CheckpointState& state) {
  if (state.fingerprint != fingerprint_) {
    auto split = [](const std::string& f) {
      std::vector<std::string> parts;
      std::stringstream ss(f);
      for (std::string line; std::getline(ss, line);) parts.push_back(line);
      return parts;
    };
    auto before = split(state.fingerprint), now = split(fingerprint_);
    std::string what;
    for (std::size_t i = 0; i < std::max(before.size(), now.size()); ++i) {
      std::string a = i < before.size() ? before[i] : "", b = i < now.size() ? now[i] : "";
      if (a != b) what += fmt::format("\n  checkpoint: {}\n  now:        {}", a, b);
    }
    throw Error(ErrorCode::invalid_argument,
                fmt::format("{}: cannot resume: the run differs from the checkpoint's:{}\nRun without --resume to "
                            "start again.",
                            checkpoint_name(), what));
  }
  verify_files_against(state);
  Position at;
  at.records = state.records_done;
  at.input_offset = state.input_offset;
  at.input_line = state.input_line;
  at.source_position = state.input_position;
  at.output_offset = state.output_offset;
  at.dead_letter_offset = state.dead_letter_offset;
  at.completed = state.completed;
  at.failed = state.failed;
  at.tokens = state.tokens;
  at.truncated = state.truncated;
  at.sink_position = state.output_position;
  done_ = boundary_ = at;
  next_index_ = next_release_ = at.records;
  summary_.records_read = at.records;
  summary_.completed = at.completed;
  summary_.failed = at.failed;
  failed_released_ = at.failed;
  summary_.tokens = at.tokens;
  summary_.truncated = at.truncated;
  summary_.bytes_read = at.input_offset;
  resumed_bytes_ = at.input_offset;
  resumed_tokens_ = at.tokens;
  resumed_records_ = at.records;
  output_appended_ = wants_jsonl_ ? at.output_offset : 0;
  sink_written_ = sink_committed_ = wants_jsonl_ ? 0 : at.output_offset;
  dead_letter_appended_ = at.dead_letter_offset;
  last_checkpoint_records_ = at.records;
  if (state.finished) check_source_ended(state);
  return state.finished;
}

void Pipeline::Impl::check_source_ended(const CheckpointState& state) {
  // A run over records appended since would batch them otherwise than one run over the whole
  // input, so its bytes would not be those of an uninterrupted run.
  std::vector<Record> more;
  try {
    more = source_->read_batch(1);
  } catch (const std::exception& e) {
    throw Error(ErrorCode::invalid_argument, fmt::format("{}: cannot resume: {}", checkpoint_name(), e.what()));
  }
  if (!more.empty()) {
    throw Error(ErrorCode::invalid_argument,
                fmt::format("{}: cannot resume: it records a finished run that read {} records of {}, and it has "
                            "records after them now (line {}): it grew since; run without --resume to start again",
                            checkpoint_name(), state.records_done, input_name_, more.front().line));
  }
}

CheckpointState Pipeline::Impl::checkpoint_state() const {
  const bool finished = eof_ && in_flight_records_ == 0 && !failed_;
  const Position& at = finished ? done_ : boundary_;
  CheckpointState s;
  s.input = input_name_;
  s.input_size = input_size_;
  s.input_offset = at.input_offset;
  s.input_line = at.input_line;
  s.input_position = at.source_position;
  s.records_done = at.records;
  s.output = own_jsonl_ ? opt_.output : sink_->name();
  s.output_offset = at.output_offset;
  s.output_position = at.sink_position;
  s.dead_letter = opt_.dead_letter;
  s.dead_letter_offset = at.dead_letter_offset;
  s.completed = at.completed;
  s.failed = at.failed;
  s.tokens = at.tokens;
  s.truncated = at.truncated;
  s.fingerprint = fingerprint_;
  s.finished = finished;
  return s;
}

void Pipeline::Impl::maybe_checkpoint(bool final_one, std::function<void()> then) {
  auto done = [then = std::move(then)] {
    if (then) then();
  };
  if (opt_.checkpoint.empty()) {
    // No checkpoint, or the sink's, which goes with each commit (final_commit() stores the last).
    done();
    return;
  }
  if (checkpoint_busy_) {
    // The final checkpoint must not be lost to a periodic one still syncing: it follows it.
    if (final_one) {
      final_checkpoint_waiting_ = std::move(done);
    } else {
      done();
    }
    return;
  }
  if (!final_one) {
    const bool due = boundary_.records - last_checkpoint_records_ >= opt_.checkpoint_every_records ||
                     (boundary_.records > last_checkpoint_records_ &&
                      unix_time_now() - last_checkpoint_time_ >= opt_.checkpoint_every_s);
    if (!due) {
      done();
      return;
    }
  }
  checkpoint_busy_ = true;
  CheckpointState state = checkpoint_state();
  // The checkpoint names positions only once the bytes before them are on disk.
  auto write_it = [this, state, done, final_one](int status) mutable {
    checkpoint_busy_ = false;
    // A final checkpoint asked for meanwhile runs once this one is over (after done()).
    struct FinalAfter {
      Impl* self;
      ~FinalAfter() {
        if (auto then = std::move(self->final_checkpoint_waiting_)) {
          self->final_checkpoint_waiting_ = nullptr;
          self->maybe_checkpoint(true, std::move(then));
        }
      }
    } final_after{this};
    if (status < 0) {
      fail_run(fmt::format("{}: cannot sync the dead-letter file: {}", opt_.dead_letter, uv_strerror(status)));
      done();
      return;
    }
    if (final_one) {
      // The run is finishing and nothing more is released: every byte appended before is now
      // written and synced, so the records still waiting for their writes are done too (a run
      // that failed at record 20 records the window before it, not the last checkpoint).
      complete_written();
      state = checkpoint_state();
    }
    if (std::string err = save_checkpoint(state); !err.empty()) {
      fail_run(err);
      done();
      return;
    }
    last_checkpoint_records_ = state.records_done;
    last_checkpoint_time_ = unix_time_now();
    if (bus_.wants<Checkpointed>()) {
      bus_.publish(
          Checkpointed{opt_.checkpoint, state.records_done, state.input_offset, state.input_line, state.output_offset});
    }
    done();
    // The sync held the writers busy: the run may have become complete meanwhile.
    check_done();
  };
  // The output is durable already (a record is done once its commit returned); the dead
  // letters it names are synced first.
  if (dead_) {
    dead_->sync(write_it);
  } else {
    write_it(0);
  }
}

}  // namespace sluice
