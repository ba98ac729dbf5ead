#include "index_command.hpp"

#include <unistd.h>

#include <algorithm>
#include <memory>
#include <thread>

#include <fmt/format.h>
#include <uv.h>

#include <sluice/error.hpp>
#include <sluice/file_roles.hpp>
#include <sluice/model.hpp>
#include <sluice/nats.hpp>
#include <sluice/pipeline.hpp>
#include <sluice/store.hpp>
#include <sluice/tokenizer.hpp>

#include "code/ignore.hpp"
#include "code/index.hpp"
#include "exit_codes.hpp"
#include "model/model_config.hpp"
#include "progress_reporter.hpp"
#include "run_support.hpp"

namespace pipeline_run {

int run_index(IndexArgs& args) {
  if (!sluice::is_store_uri(args.store)) {
    fmt::print(stderr,
               "error: -o names the store to index into: sqlite:PATH or postgresql://... (docs/code-index.md)\n");
    return kExitUsage;
  }
  if (args.model.empty()) args.model = default_model_dir();
  sluice::ModelOptions mo;
  if (!sluice::precision_from_name(args.precision, mo.precision)) {
    fmt::print(stderr, "error: --precision {}: fp32, bf16 or int8\n", args.precision);
    return kExitUsage;
  }
  // The files this run writes are distinct, and none of them is indexed.
  std::vector<sluice::FileRole> roles;
  const std::string store_path = sluice::sqlite_store_path(args.store).value_or(std::string());
  if (!store_path.empty()) roles.push_back({"store", store_path});
  if (!args.events.empty()) roles.push_back({"event log", args.events, STDOUT_FILENO});
  if (!args.dead_letter.empty()) roles.push_back({"dead-letter file", args.dead_letter});
  sluice::check_distinct_files(roles);

  sluice::code::IndexOptions io;
  io.root = args.root;
  io.store = args.store;
  io.walk.include = args.include;
  io.walk.exclude = args.exclude;
  io.walk.max_file_bytes = args.max_file_bytes;
  {
    std::error_code ec;
    const auto root = std::filesystem::weakly_canonical(std::filesystem::absolute(args.root), ec);
    for (const std::string& out : {store_path, store_path + "-wal", store_path + "-shm", store_path + ".sluice-lock",
                                   args.events, args.dead_letter}) {
      if (out.empty() || out == "-" || out == "-wal" || out == "-shm" || out == ".sluice-lock") continue;
      const auto rel = std::filesystem::weakly_canonical(std::filesystem::absolute(out), ec).lexically_relative(root);
      if (!rel.empty() && *rel.begin() != "..") {
        io.walk.exclude.push_back("/" + sluice::code::escape_glob(rel.generic_string()));
      }
    }
  }

  ProgressMode mode = args.progress == "always"  ? ProgressMode::always
                      : args.progress == "never" ? ProgressMode::never
                                                 : ProgressMode::automatic;
  ProgressReporter reporter(stderr, mode);
  // The thread layout embed's pipeline gives a model it loads: concurrent single-threaded
  // calls, one per core (a model passed to a pipeline keeps the threads it was loaded with).
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const sluice::ThreadLayout layout =
      sluice::model_thread_layout(std::min(args.threads, cores), std::min(args.model_workers, cores), true);
  mo.threads = layout.threads_per_worker;
  reporter.loading_model(args.model.string());
  std::shared_ptr<sluice::Model> model = sluice::Model::load(args.model, mo);
  if (args.nats.given) {
    // Chunks embedded on NATS workers (docs/scale-out.md); the store's rows name the same model.
    model = sluice::connect_nats_model(std::move(model), args.nats.remote);
    reporter.set_remote(true);
  }
  std::shared_ptr<sluice::Tokenizer> tokenizer = sluice::Tokenizer::from_file(args.model / "tokenizer.json");
  const sluice::ModelInfo& info = model->info();

  std::uint32_t limit = args.chunk_tokens != 0 ? args.chunk_tokens : static_cast<std::uint32_t>(info.max_tokens);
  const auto specials = static_cast<std::uint32_t>(tokenizer->count_tokens("", true));
  if (limit > info.max_tokens) {
    fmt::print(stderr, "error: --chunk-tokens {} is over the model's limit of {} tokens\n", limit, info.max_tokens);
    return kExitUsage;
  }
  if (limit <= specials + sluice::code::kHeaderTokens + 8) {
    fmt::print(stderr,
               "error: --chunk-tokens {} leaves no room for code: {} special tokens and {} for the header line come "
               "first\n",
               limit, specials, sluice::code::kHeaderTokens);
    return kExitUsage;
  }
  io.budget = limit - specials - sluice::code::kHeaderTokens;

  sluice::SinkRun run;
  std::error_code ec;
  const auto dir = std::filesystem::weakly_canonical(std::filesystem::absolute(args.model), ec);
  run.model = ec ? args.model.string() : dir.string();
  run.model_family = info.family;
  run.model_identity = sluice::model_identity(info);
  run.pooling = std::string(sluice::pooling_name(info.pooling));
  run.precision = std::string(sluice::precision_name(info.precision));
  run.dimensions = static_cast<std::uint32_t>(info.dimensions);
  run.normalized = info.normalize;

  sluice::PipelineOptions po;
  po.on_error = sluice::OnError::skip;  // a chunk that fails fails its file; the run goes on
  po.dead_letter = args.dead_letter;
  po.threads = layout.workers * layout.threads_per_worker;
  po.model_workers = model->concurrent_embed() ? layout.workers : 1;
  po.batch_size = args.batch_size;
  po.max_batch_tokens = args.max_batch_tokens;
  po.long_input = sluice::LongInput::truncate;
  // Files are written as the windows that hold their chunks complete: short windows (64
  // chunks, or the batch size when smaller), so a run killed or stopped loses at most the
  // files of the windows in flight (the engine's default window is 4096 records).
  po.sort_window = args.sort_window != 0 ? args.sort_window : std::min<std::size_t>(args.batch_size, 64);

  std::unique_ptr<sluice::code::CodeIndex> index;
  try {
    io.pipeline_id = po.pipeline_id;
    index = std::make_unique<sluice::code::CodeIndex>(io, tokenizer, run);
  } catch (const sluice::Error& e) {
    reporter.clear_line();
    fmt::print(stderr, "error: {}\n", e.what());
    return e.code() == sluice::ErrorCode::invalid_argument ? kExitUsage : kExitFailure;
  }
  const auto before = index->totals();

  sluice::Pipeline pipeline(po, model, tokenizer);
  pipeline.set_source(index->make_source());
  pipeline.set_sink(index->make_sink());
  pipeline.subscribe(sluice::code::CodeIndex::filter(),
                     [&index](const sluice::PipelineEvent& e) { index->on_event(e); });
  std::unique_ptr<EventWriter> events;
  if (!args.events.empty()) {
    events = std::make_unique<EventWriter>(args.events, [&pipeline] { pipeline.stop(); });
    pipeline.subscribe(sluice::EventFilter::all(), [w = events.get()](const sluice::PipelineEvent& e) { w->on_event(e); });
  }
  // The progress line counts files and chunks; the run's summary is the index's own.
  reporter.set_summary(false);
  reporter.set_adjust([&index](ProgressView& v) {
    const auto t = index->totals();
    v.counts = fmt::format("{}/{} files, {} chunks", t.files_done, t.files_total, t.chunks);
    v.failed = t.failed;
    v.rate_unit = "chunks/s";
    v.docs_per_s = v.elapsed_s > 0 ? static_cast<double>(t.chunks - t.chunks_reused) / v.elapsed_s : 0;
  });
  pipeline.subscribe(sluice::EventFilter::of<sluice::PipelineStarted, sluice::BatchProgress, sluice::PipelineFinished>(),
                     [&](const sluice::PipelineEvent& e) { reporter.on_event(e); });

  const sluice::RunSummary summary = run_on_loop(pipeline, "writing the files done; those in flight are left for the next run");
  reporter.clear_line();
  const bool events_ok = !events || events->close();

  const auto t = index->totals();
  std::uint64_t skipped = 0;
  std::string by_reason;
  for (const auto& [kind, n] : t.skipped) {
    skipped += n;
    by_reason += fmt::format("{}{} {}", by_reason.empty() ? "" : ", ", n, kind);
  }
  const std::uint64_t embedded = t.chunks - t.chunks_reused;
  fmt::print(stderr,
             "{}: {} files: {} indexed, {} partial, {} unchanged, {} skipped{}, {} failed; {} chunks written ({} "
             "embedded, {} reused), {} files removed; left out: {} ignored, {} excluded, {} vendored folders; {} in "
             "{}{}\n",
             sluice::to_string(summary.status), t.files_total, t.indexed, t.partial, t.unchanged, skipped,
             by_reason.empty() ? "" : " (" + by_reason + ")", t.failed, t.chunks, embedded, t.chunks_reused, t.removed,
             t.walk.ignored, t.walk.excluded, t.walk.vendored, sluice::redact_uri(args.store),
             format_duration(summary.elapsed_s),
             summary.elapsed_s > 0 && embedded > 0 ? fmt::format(" ({:.1f} chunks/s)", embedded / summary.elapsed_s)
                                                   : std::string());
  if (t.graph_built) {
    fmt::print(stderr, "graph: {} edges, {} resolved to chunks ({} of {} imports); PageRank over {} chunks in {} "
               "iterations; {:.2f} s (pipeline-run graph {})\n",
               t.graph.edges, t.graph.resolved, t.graph.imports_resolved, t.graph.imports, t.graph.chunks,
               t.graph.pagerank_iterations, t.graph.seconds, sluice::redact_uri(args.store));
  }
  for (const std::string& f : t.first_failures) fmt::print(stderr, "failed: {}\n", f);
  if (t.failed > t.first_failures.size()) {
    fmt::print(stderr, "... and {} more failed files (SELECT path, reason FROM files WHERE status = 'failed')\n",
               t.failed - t.first_failures.size());
  }
  if (t.removal_skipped) {
    fmt::print(stderr, "note: the walk had errors, so rows of files not seen were kept (a folder that could not be "
                       "read is not gone)\n");
  }
  (void)before;
  if (!events_ok) {
    fmt::print(stderr, "error: {}\n", events->error());
    return finished(kExitFailure);
  }
  if (summary.status == sluice::RunStatus::failed) {
    fmt::print(stderr, "error: {}\n", summary.error);
    return finished(kExitFailure);
  }
  if (summary.status == sluice::RunStatus::stopped) {
    fmt::print(stderr, "stopped; the files written so far are in {}: run the same command again to finish\n",
               sluice::redact_uri(args.store));
    return finished(kExitInterrupted);
  }
  return finished(t.failed > 0 ? kExitRecordsFailed : kExitOk);
}

}  // namespace pipeline_run
