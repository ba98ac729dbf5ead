// pipeline-run: the command line for sluice. Argument parsing, the terminal reporter and exit
// codes live here; everything else is in libsluice.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <uv.h>
#include <CLI/CLI.hpp>

#include <sluice/error.hpp>
#include <sluice/events.hpp>
#include <sluice/file_roles.hpp>
#include <sluice/model.hpp>
#include <sluice/nats.hpp>
#include <sluice/omp_wait_policy.hpp>
#include <sluice/pipeline.hpp>
#include <sluice/store.hpp>
#include <sluice/validate.hpp>
#include <sluice/vector_format.hpp>

#include "exit_codes.hpp"
#include "nats_args.hpp"
#include "run_support.hpp"
#include "worker_command.hpp"
#ifdef SLUICE_CODE_INDEX
#include "chunk_command.hpp"
#include "graph_command.hpp"
#include "index_command.hpp"
#endif
#include "progress_reporter.hpp"
#include "remote_args.hpp"
#include "search_command.hpp"
#include "serve_command.hpp"
#include "tokenize_command.hpp"

using namespace pipeline_run;

namespace {

struct EmbedArgs {
  sluice::PipelineOptions pipeline;
  std::string events;
  std::string progress = "auto";
  std::string on_error = "fail";
  bool no_validate = false;
  bool no_checkpoint = false;
  bool on_error_given = false;
  std::string long_input = "truncate";
  std::string output_type = "float32";
  std::string output_encoding = "json";
  std::string pooling;
  std::string precision = "fp32";
  std::string device = "cpu";
  bool normalize = false;
  bool no_normalize = false;
  std::optional<std::uint64_t> max_errors;
  std::string table = "embeddings";
  bool table_given = false;
  NatsArgs nats;
  RemoteArgs remote;
  bool batch_limits_given = false;  // --batch-size or --max-batch-tokens
};


// Prints bad records as INPUT:LINE: message; returns how many were bad.
std::uint64_t run_validation(const std::string& input, const sluice::ValidationOptions& vo, std::uint64_t max_listed,
                             std::uint64_t& records, ProgressReporter* reporter = nullptr) {
  std::uint64_t listed = 0;
  auto summary = sluice::validate_jsonl(input, vo, [&](const sluice::InputLocation& where, const sluice::ErrorInfo& e) {
    if (reporter) reporter->clear_line();
    if (listed < max_listed) fmt::print(stderr, "{}:{}: {}\n", where.file, where.line, e.message);
    ++listed;
    return true;
  });
  if (summary.invalid > max_listed) {
    fmt::print(stderr, "... and {} more bad records (pipeline-run validate lists them all)\n",
               summary.invalid - max_listed);
  }
  records = summary.records;
  return summary.invalid;
}


int run_embed(EmbedArgs& args) {
  auto& opt = args.pipeline;
  std::shared_ptr<sluice::Tokenizer> remote_tokenizer;  // with --remote
  if (args.remote.given) {
    // A remote API embeds: nothing of this machine's model applies, and the API's limits
    // size the batches.
    auto refuse = [](std::string_view what, std::string_view why) {
      fmt::print(stderr, "error: {} does not go with --remote: {}\n", what, why);
      return kExitUsage;
    };
    if (args.nats.given) return refuse("--nats", "the model is the remote API, not NATS workers");
    if (args.device != "cpu") return refuse("--device", "the API runs the model");
    if (args.precision != "fp32") return refuse("--precision", "the API runs the model");
    if (!args.pooling.empty()) return refuse("--pooling", "the API pools");
    if (args.normalize || args.no_normalize) return refuse("--normalize/--no-normalize", "the API's vectors are kept as they come");
    if (args.batch_limits_given) {
      return refuse("--batch-size/--max-batch-tokens", "the API's limits are --remote-max-inputs and --remote-max-tokens");
    }
    opt.batch_size = args.remote.max_inputs;
    opt.max_batch_tokens = args.remote.max_tokens;
    // The folder, when given, is the API model's own tokenizer (exact counts and truncation);
    // without one, tokens are estimated.
    remote_tokenizer = prepare_remote(args.remote, opt.model);
  }
  if (opt.model.empty()) opt.model = default_model_dir();
  if (args.max_errors) {
    // --max-errors means going on past bad records, up to a limit.
    if (args.on_error_given && args.on_error == "fail") {
      fmt::print(stderr, "error: --max-errors tolerates bad records; it cannot be used with --on-error fail\n");
      return kExitUsage;
    }
    args.on_error = "skip";
    opt.max_errors = args.max_errors;
  }
  opt.on_error = args.on_error == "skip" ? sluice::OnError::skip : sluice::OnError::fail;
  opt.vector_format.type = *sluice::parse_vector_type(args.output_type);        // checked by CLI11
  opt.vector_format.encoding = *sluice::parse_vector_encoding(args.output_encoding);
  opt.pooling = parse_pooling(args.pooling);
  if (args.normalize) opt.normalize = true;
  if (args.no_normalize) opt.normalize = false;
  sluice::precision_from_name(args.precision, opt.precision);
  opt.device = sluice::parse_device(args.device);  // checked by CLI11
  opt.long_input = args.long_input == "chunk"  ? sluice::LongInput::chunk
                   : args.long_input == "fail" ? sluice::LongInput::fail
                                               : sluice::LongInput::truncate;
  if (args.events == "-" && opt.output == "-") {
    fmt::print(stderr,
               "error: --events - and standard output for embeddings (-o -) cannot share standard output; "
               "give -o a file or --events a path\n");
    return kExitUsage;
  }
  if (!opt.dead_letter.empty() && opt.on_error == sluice::OnError::fail) {
    fmt::print(stderr, "note: --dead-letter is used only with --on-error skip\n");
  }
  // A store (-o sqlite:PATH, -o postgresql://...) keeps the checkpoint itself, with its rows.
  std::optional<sluice::StoreOptions> store;
  if (sluice::is_store_uri(opt.output)) {
    store.emplace();
    store->uri = opt.output;
    store->table = args.table;
    store->id_field = opt.id_field;
    store->keep_checkpoint = !args.no_checkpoint;
    if (!opt.checkpoint.empty()) {
      fmt::print(stderr, "error: a store keeps the run's checkpoint itself, in the transaction of its rows: drop "
                         "--checkpoint\n");
      return kExitUsage;
    }
    if (opt.long_input == sluice::LongInput::chunk) {
      fmt::print(stderr, "error: --long-input chunk writes JSONL output; a store takes one row per record: use "
                         "--long-input truncate or fail, or write JSONL\n");
      return kExitUsage;
    }
    if (opt.resume && args.no_checkpoint) {
      fmt::print(stderr, "error: --resume needs the checkpoint that --no-checkpoint turns off\n");
      return kExitUsage;
    }
    if (auto file = sluice::sqlite_store_path(store->uri)) opt.other_files.push_back({"store", *file});
  } else {
    if (args.table_given) {
      fmt::print(stderr, "error: --table names a store's table: give -o sqlite:PATH or -o postgresql://...\n");
      return kExitUsage;
    }
    // No checkpoint beside a device or a pipe (-o /dev/null would put one in /dev): only an
    // output that is, or will be, a regular file has one by default.
    struct stat out_st {};
    const bool output_is_special =
        opt.output != "-" && ::stat(opt.output.c_str(), &out_st) == 0 && !S_ISREG(out_st.st_mode);
    if (opt.checkpoint.empty() && !args.no_checkpoint && opt.output != "-" && !output_is_special) {
      opt.checkpoint = opt.output + ".checkpoint";
    }
    if (args.no_checkpoint) opt.checkpoint.clear();
    if (opt.resume && opt.checkpoint.empty()) {
      fmt::print(stderr, "error: --resume needs a checkpoint: give -o a file (or --checkpoint PATH)\n");
      return kExitUsage;
    }
  }

  // No file may play two roles (the input as output, the checkpoint as event log...): checked
  // before anything is opened, the event log included.
  if (!args.events.empty()) opt.other_files.push_back({"event log", args.events, STDOUT_FILENO});
  // Read before the run, but an output or a log over it would destroy the key.
  if (!args.remote.key_file.empty()) opt.other_files.push_back({"API key file", args.remote.key_file});
  {
    auto roles = sluice::run_files(opt);
    if (store) std::erase_if(roles, [](const sluice::FileRole& r) { return r.role == "output"; });
    sluice::check_distinct_files(roles);
  }
  if (store) {
    // Reachable, writable, and its table one of sluice's: said before anything is loaded.
    try {
      sluice::describe_store(*store);
    } catch (const sluice::Error& e) {
      fmt::print(stderr, "error: {}\n", e.what());
      return kExitUsage;
    }
  }

  opt.threads = cap_to_cores(opt.threads, "--threads");
  opt.model_workers = cap_to_cores(opt.model_workers, "--model-workers");

  // Validation first: bad input is reported before the model is loaded.
  // Only a regular file can be read twice: a pipe, FIFO, /dev/stdin or process substitution
  // is read once, by the run itself (which still stops at the first bad record).
  struct stat in_st {};
  const bool input_rereadable = opt.input != "-" && ::stat(opt.input.c_str(), &in_st) == 0 && S_ISREG(in_st.st_mode);
  ProgressMode mode = args.progress == "always"  ? ProgressMode::always
                      : args.progress == "never" ? ProgressMode::never
                                                 : ProgressMode::automatic;
  ProgressReporter reporter(stderr, mode);
  if (opt.on_error == sluice::OnError::fail && !args.no_validate && input_rereadable) {
    sluice::ValidationOptions vo{opt.text_field, opt.output_field, opt.max_record_bytes, opt.read_chunk_bytes};
    vo.on_progress = [&reporter](std::uint64_t done, std::uint64_t total) { reporter.validating(done, total); };
    std::uint64_t records = 0;
    std::uint64_t bad = run_validation(opt.input, vo, 50, records, &reporter);
    reporter.clear_line();
    if (bad > 0) {
      fmt::print(stderr,
                 "error: {} of {} records are invalid; nothing was embedded. Fix them, or run with "
                 "--on-error skip --dead-letter PATH to embed the rest and keep the bad ones.\n",
                 bad, records);
      return kExitInvalidInput;
    }
  }

  if (args.nats.given && opt.device.kind != sluice::DeviceKind::cpu) {
    fmt::print(stderr, "error: --device {} and --nats do not go together: with --nats the model runs on the "
                       "workers, on their CPUs\n", args.device);
    return kExitUsage;
  }
  reporter.loading_model(args.remote.given ? fmt::format("the API at {}", sluice::redact_url(args.remote.remote.url))
                                          : opt.model.string());
  std::optional<sluice::Pipeline> pipeline_holder;
  try {
    if (args.remote.given) {
      // The model stage is a remote API.
      std::shared_ptr<sluice::Model> remote = sluice::connect_remote_model(args.remote.remote);
      reporter.set_api(true);
      pipeline_holder.emplace(opt, std::move(remote), std::move(remote_tokenizer));
    } else if (args.nats.given) {
      // The model stage on NATS workers: the folder is loaded here only for what the workers
      // must have (its identity) and its tokenizer; connect_nats_model() lets the weights go.
      sluice::ModelOptions mo;
      mo.threads = 1;
      mo.pooling = opt.pooling;
      mo.normalize = opt.normalize;
      mo.precision = opt.precision;
      mo.device = opt.device;
      std::shared_ptr<sluice::Model> remote =
          sluice::connect_nats_model(sluice::Model::load(opt.model, mo), args.nats.remote);
      std::shared_ptr<sluice::Tokenizer> tokenizer = sluice::Tokenizer::from_file(opt.model / "tokenizer.json");
      reporter.set_remote(true);
      pipeline_holder.emplace(opt, std::move(remote), std::move(tokenizer));
    } else {
      pipeline_holder.emplace(opt);
    }
  } catch (...) {
    reporter.clear_line();
    throw;
  }
  sluice::Pipeline& pipeline = *pipeline_holder;
  // The output, built from the same parts as any program's: a store, or the JSONL file.
  pipeline.set_sink(store ? sluice::make_store_sink(*store) : sluice::make_jsonl_sink(opt.output));
  std::unique_ptr<EventWriter> events;
  if (!args.events.empty()) {
    events = std::make_unique<EventWriter>(args.events, [&pipeline] { pipeline.stop(); });
    pipeline.subscribe(sluice::EventFilter::all(), [w = events.get()](const sluice::PipelineEvent& e) { w->on_event(e); });
  }
  pipeline.subscribe(ProgressReporter::filter(), [&](const sluice::PipelineEvent& e) { reporter.on_event(e); });

  const sluice::RunSummary summary = run_on_loop(pipeline, "finishing the records in flight and writing a checkpoint");
  const bool events_ok = !events || events->close();
  auto resume_hint = [&opt, &store] {
    if (store && store->keep_checkpoint) {
      fmt::print(stderr, "the work done so far is recorded in {}: fix the cause and run the same command with --resume\n",
                 sluice::redact_uri(store->uri));
    } else if (!opt.checkpoint.empty() && std::filesystem::exists(opt.checkpoint)) {
      fmt::print(stderr, "the work done so far is recorded in {}: fix the cause and run the same command with --resume\n",
                 opt.checkpoint);
    }
  };

  if (!events_ok) {
    // The run stopped (or finished) with its output and checkpoint consistent; the event log is
    // what failed.
    if (summary.status == sluice::RunStatus::failed) fmt::print(stderr, "error: {}\n", summary.error);
    fmt::print(stderr, "error: {}\n", events->error());
    if (summary.status != sluice::RunStatus::completed) resume_hint();
    return finished(kExitFailure);
  }

  if (summary.status == sluice::RunStatus::failed) {
    fmt::print(stderr, "error: {}\n", summary.error);
    const bool bad_records = summary.failed > 0 && (opt.on_error == sluice::OnError::fail ||
                                                    (opt.max_errors && summary.failed > *opt.max_errors));
    resume_hint();
    return finished(bad_records ? kExitInvalidInput : kExitFailure);
  }
  if (summary.status == sluice::RunStatus::stopped) {
    if (store && store->keep_checkpoint) {
      fmt::print(stderr, "stopped; {} records where it stopped: run the same command with --resume to finish\n",
                 sluice::redact_uri(store->uri));
    } else if (!opt.checkpoint.empty()) {
      fmt::print(stderr, "stopped; {} records where it stopped: run the same command with --resume to finish\n",
                 opt.checkpoint);
    }
    return finished(kExitInterrupted);
  }
  if (summary.verified) {
    fmt::print(stderr, "verified: {} rows of this run in {} table {}\n", *summary.verified,
               sluice::redact_uri(store->uri), store->table);
  }
  return finished(summary.failed > 0 ? kExitRecordsFailed : kExitOk);
}

int run_validate(const std::string& input, const sluice::ValidationOptions& vo) {
  std::uint64_t records = 0;
  std::uint64_t bad = run_validation(input, vo, UINT64_MAX, records);
  if (bad > 0) {
    fmt::print(stderr, "{} of {} records are invalid\n", bad, records);
    return kExitInvalidInput;
  }
  fmt::print(stderr, "{} records, all valid\n", records);
  return kExitOk;
}

}  // namespace

// OMP_WAIT_POLICY=PASSIVE before libgomp reads it (omp_wait_policy.hpp); the re-execution
// in main() is then a no-op kept for safety.
SLUICE_PASSIVE_OMP_WAIT_AT_LOAD();

int main(int argc, char** argv) {
  sluice::reexec_with_passive_omp_wait(argv);
  // Past a file size limit (ulimit -f) a write then fails with EFBIG, reported like any other
  // output error with a consistent checkpoint, instead of the process being killed.
  signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"pipeline-run: stream JSONL through a transformer embedding model in bounded memory"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "pipeline-run 0.1.0");

  EmbedArgs embed;
  auto& po = embed.pipeline;
  auto* cmd_embed =
      app.add_subcommand("embed", "Embed every record of a JSONL file; write JSONL with an added embedding");
  cmd_embed->add_option("input", po.input, "Input JSONL file, or - for standard input")->required();
  cmd_embed
      ->add_option("-o,--output", po.output,
                   "Output JSONL file, - for standard output, or a store: sqlite:PATH, postgresql://... (docs/stores.md)")
      ->capture_default_str();
  cmd_embed->add_option("--table", embed.table, "With a store: the table (created on first use)")->capture_default_str();
  cmd_embed
      ->add_option("--model", po.model,
                   "Hugging Face model folder (config.json, tokenizer.json, model.safetensors); default: the "
                   "bundled Universal Sentence Encoder Lite (tools/models/install_default_model.sh)")
      ->check(CLI::ExistingDirectory);
  cmd_embed->add_option("--text-field", po.text_field, "String field to embed")->capture_default_str();
  cmd_embed->add_option("--output-field", po.output_field, "Field added to each output record")->capture_default_str();
  cmd_embed->add_option("--prompt", po.prompt, "Text put before every input, e.g. \"query: \" (counts toward max tokens)");
  cmd_embed->add_option("--prompt-name", po.prompt_name,
                        "A prompt of the model's config_sentence_transformers.json, by name (default: its default)");
  cmd_embed->add_option("--pooling", embed.pooling, "Override the model's pooling")
      ->check(CLI::IsMember({"mean", "cls", "max", "last_token"}));
  auto* norm = cmd_embed->add_flag("--normalize", embed.normalize, "L2-normalise embeddings (override the model)");
  cmd_embed->add_flag("--no-normalize", embed.no_normalize, "Do not L2-normalise embeddings (override the model)")
      ->excludes(norm);
  cmd_embed->add_option("--precision", embed.precision, "Linear layers in fp32, bf16 or dynamic int8")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16", "int8"}));
  cmd_embed
      ->add_option("--device", embed.device,
                   "Run the model on cpu, cuda or cuda:N (cuda: a build with -Dcuda=enabled; --threads then bounds "
                   "the CPU work only)")
      ->capture_default_str()
      ->check([](const std::string& v) {
        try {
          sluice::parse_device(v);
          return std::string();
        } catch (const sluice::Error& e) {
          return std::string(e.what());
        }
      });
  cmd_embed->add_option("--dim", po.dimensions,
                        "Keep the first N dimensions (Matryoshka), renormalised when the model normalises (0: all)")
      ->capture_default_str()
      ->check(CLI::Range(0u, 65536u));
  cmd_embed->add_option("--output-type", embed.output_type, "Embedding values as float32, float16, int8 or binary")
      ->capture_default_str()
      ->check(CLI::IsMember({"float32", "float16", "int8", "binary"}));
  cmd_embed->add_option("--output-encoding", embed.output_encoding, "json: an array; base64: a string of the bytes")
      ->capture_default_str()
      ->check(CLI::IsMember({"json", "base64"}));
  cmd_embed
      ->add_option("--long-input", embed.long_input,
                   "Texts over the model's limit: truncate (counted), chunk (one record per window), fail")
      ->capture_default_str()
      ->check(CLI::IsMember({"truncate", "chunk", "fail"}));
  cmd_embed->add_option("--chunk-tokens", po.chunk_tokens, "With chunk: window length (0: the model's limit)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 20));
  cmd_embed->add_option("--chunk-overlap", po.chunk_overlap, "With chunk: tokens a window repeats from the one before")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 20));
  cmd_embed->add_flag("--chunk-document", po.chunk_document,
                      "With chunk: also write each record with the token-weighted mean of its windows");
  cmd_embed
      ->add_option("--id-field", po.id_field,
                   "A store's row id (records without it: their line number); with chunk, each window's parent_id")
      ->capture_default_str();
  cmd_embed->add_option("--max-batch-tokens", po.max_batch_tokens,
                        "Padded tokens per model call, at most; records are sorted by length within a window (0: off)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 24));
  cmd_embed->add_option("--sort-window", po.sort_window, "Records sorted together (0: the batch size)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 20));
  cmd_embed
      ->add_option("--sort-window-bytes", po.sort_window_bytes,
                   "A window also closes once its records weigh this many bytes (large records, short windows)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 40));
  cmd_embed->add_option("--batch-size", po.batch_size, "Records per model call, at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 65536));
  cmd_embed
      ->add_option("--on-error", embed.on_error,
                   "fail: validate first and stop at the first bad record; skip: report bad records and go on")
      ->capture_default_str()
      ->check(CLI::IsMember({"fail", "skip"}));
  cmd_embed->add_option("--max-errors", embed.max_errors,
                        "Go on past bad records (--on-error skip), but stop the run when more than N have failed")
      ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{1} << 62));
  cmd_embed->add_option("--dead-letter", po.dead_letter, "With --on-error skip: write bad records here (JSONL)");
  cmd_embed->add_option("--events", embed.events, "Write every event as a JSON line to PATH, or - for standard output");
  cmd_embed->add_option("--progress", embed.progress, "auto: live line on a terminal, plain lines otherwise")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "always", "never"}));
  cmd_embed->add_option("--threads", po.threads, "Cores the model uses, all its calls together (0 = all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd_embed->add_option("--model-workers", po.model_workers,
                        "Model calls at once, each with its share of --threads (0 = one per core up to 8 cores, "
                        "then 8); cuda: 1")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd_embed->add_option("--max-record-bytes", po.max_record_bytes, "Longest record accepted; longer ones fail")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
  cmd_embed->add_option("--max-in-flight", po.max_in_flight_records, "Records between reading and writing")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 24));
  cmd_embed->add_option("--max-in-flight-bytes", po.max_in_flight_bytes, "Their bytes")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 40));
  cmd_embed->add_option("--checkpoint", po.checkpoint, "Checkpoint file (default: OUTPUT.checkpoint)");
  cmd_embed->add_flag("--no-checkpoint", embed.no_checkpoint, "Write no checkpoint");
  cmd_embed->add_flag("--resume", po.resume,
                      "Continue from the checkpoint: cut the output back to it and read on from its input offset");
  cmd_embed->add_option("--checkpoint-every", po.checkpoint_every_records,
                        "Records between checkpoints (0: at every window)")
      ->capture_default_str()
      ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{1} << 40));
  cmd_embed->add_flag("--no-validate", embed.no_validate, "Skip the validation pass before the model loads");
  add_nats_options(*cmd_embed, embed.nats, true);
  add_remote_options(*cmd_embed, embed.remote);

  WorkerArgs worker;
  auto* cmd_worker = app.add_subcommand(
      "worker", "Serve runs started with --nats: pull their batches from NATS JetStream and embed them here");
  add_nats_options(*cmd_worker, worker.nats, false);
  cmd_worker
      ->add_option("--model", worker.model,
                   "Model folder: the same files as the run's (compared by content); default: the bundled model")
      ->check(CLI::ExistingDirectory);
  cmd_worker->add_option("--name", worker.name, "How runs name this worker (default: HOST-PID)");
  cmd_worker->add_option("--threads", worker.threads, "Cores the model uses, all its calls together (0 = all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd_worker->add_option("--model-workers", worker.calls, "Batches embedded at once (0 = one per core up to 8 cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd_worker->add_option("--pooling", worker.pooling, "As the run's --pooling (part of the model's identity)")
      ->check(CLI::IsMember({"mean", "cls", "max", "last_token"}));
  cmd_worker->add_flag("--normalize", worker.normalize, "As the run's --normalize");
  cmd_worker->add_flag("--no-normalize", worker.no_normalize, "As the run's --no-normalize");
  cmd_worker->add_option("--precision", worker.precision, "As the run's --precision")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16", "int8"}));

  ServeArgs serve;
  auto* cmd_serve = app.add_subcommand(
      "serve", "Serve the model over HTTP: an OpenAI-compatible POST /v1/embeddings, GET /health, GET /metrics");
  cmd_serve->add_option("--model", serve.model, "Model folder (default: the bundled model)")
      ->check(CLI::ExistingDirectory);
  cmd_serve->add_option("--listen", serve.listen, "HOST:PORT to listen on ([ADDRESS]:PORT for IPv6; port 0: any free one)")
      ->capture_default_str();
  cmd_serve->add_option("--name", serve.server.model_name,
                        "The model's name in requests and answers (default: the folder's name)");
  cmd_serve->add_option("--threads", serve.server.threads, "Cores the model uses, all its calls together (0 = all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd_serve->add_option("--model-workers", serve.server.model_workers, "Model calls at once (0 = one per core up to 8 cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd_serve->add_option("--batch-size", serve.server.batch_size, "Inputs per model call, at most, all requests together")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 16));
  cmd_serve->add_option("--max-batch-tokens", serve.server.max_batch_tokens,
                        "Padded tokens per model call, at most (inputs x longest)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 24));
  cmd_serve->add_option("--max-inputs", serve.server.max_inputs, "Inputs per request, at most (400 past it)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20));
  cmd_serve->add_option("--max-request-bytes", serve.server.max_request_bytes, "A request's body, at most (413 past it)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1} << 10, std::size_t{1} << 30));
  cmd_serve->add_option("--max-pending-bytes", serve.server.max_pending_bytes,
                        "Bodies of requests received and not yet answered, all together (429 past it)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1} << 10, std::size_t{1} << 40));
  cmd_serve->add_option("--max-queue-rows", serve.server.max_queue_rows,
                        "Inputs accepted and not yet embedded, all requests together (429 past it)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
  cmd_serve->add_option("--max-connections", serve.server.max_connections, "Open connections (503 past it)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20));
  cmd_serve->add_option("--idle-timeout", serve.server.idle_timeout_s, "Seconds a keep-alive connection may stay idle")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  cmd_serve->add_option("--request-timeout", serve.server.request_timeout_s,
                        "Seconds to receive a whole request after its first byte (408 past it)")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  cmd_serve->add_flag("--truncate", serve.server.truncate,
                      "Truncate inputs longer than the model takes (default: answer 400, as OpenAI does; a request's "
                      "\"truncate\" overrides)");
  cmd_serve->add_option("--pooling", serve.pooling, "Override the model's pooling")
      ->check(CLI::IsMember({"mean", "cls", "max", "last_token"}));
  auto* serve_norm = cmd_serve->add_flag("--normalize", serve.normalize, "L2-normalise embeddings (override the model)");
  cmd_serve->add_flag("--no-normalize", serve.no_normalize, "Do not L2-normalise embeddings")->excludes(serve_norm);
  cmd_serve->add_option("--precision", serve.precision, "Linear layers in fp32, bf16 or dynamic int8")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16", "int8"}));
  cmd_serve->add_option("--device", serve.device, "Run the model on cpu, cuda or cuda:N")
      ->capture_default_str()
      ->check([](const std::string& v) {
        try {
          sluice::parse_device(v);
          return std::string();
        } catch (const sluice::Error& e) {
          return std::string(e.what());
        }
      });

  std::string validate_input;
  sluice::ValidationOptions vo;
  auto* cmd_validate =
      app.add_subcommand("validate", "Check a JSONL file; list every bad record as INPUT:LINE: message");
  cmd_validate->add_option("input", validate_input, "Input JSONL file, or - for standard input")->required();
  cmd_validate->add_option("--text-field", vo.text_field, "String field to embed")->capture_default_str();
  cmd_validate->add_option("--output-field", vo.output_field, "Field the output would add")->capture_default_str();
  cmd_validate->add_option("--max-record-bytes", vo.max_record_bytes, "Longest record accepted")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));

  TokenizeArgs tok;
  auto* cmd_tokenize = app.add_subcommand(
      "tokenize", "Write each record's input_ids as the Hugging Face tokenizer gives them; --stats: what a job costs");
  cmd_tokenize->add_option("input", tok.input, "Input JSONL file, or - for standard input")->required();
  cmd_tokenize->add_option("-o,--output", tok.output, "Output JSONL file (the record plus its ids), or - for stdout");
  cmd_tokenize->add_option("--model", tok.model, "Model folder (its tokenizer.json; --stats also reads its limit)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd_tokenize->add_option("--text-field", tok.text_field, "String field to tokenise")->capture_default_str();
  cmd_tokenize->add_option("--output-field", tok.output_field, "Field added to each output record")
      ->capture_default_str();
  cmd_tokenize->add_option("--max-record-bytes", tok.max_record_bytes, "Longest record accepted")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
  cmd_tokenize->add_flag("--stats", tok.stats,
                         "Print token counts, how many records the model would truncate, and a length histogram");
  cmd_tokenize->add_flag("--no-special-tokens", tok.no_special_tokens, "Encode without the special tokens");

  SearchArgs search;
  auto* cmd_search = app.add_subcommand(
      "search", "The rows of a store nearest to a query (cosine), embedded with the store's own model");
  cmd_search->add_option("store", search.store, "The store: sqlite:PATH or postgresql://...")->required();
  cmd_search->add_option("-q,--query", search.queries, "Query text (may be given more than once)");
  cmd_search->add_option("--queries", search.queries_file, "JSONL file of queries, one record each (--text-field)")
      ->check(CLI::ExistingFile);
  add_remote_options(*cmd_search, search.remote);
  cmd_search->add_option("-k", search.k, "Results per query")->capture_default_str()->check(CLI::Range(1, 100000));
  cmd_search->add_option("--table", search.table, "The table")->capture_default_str();
  cmd_search->add_option("--model", search.model, "Model folder (default: the one the store records, checked by content)")
      ->check(CLI::ExistingDirectory);
  cmd_search->add_option("--text-field", search.text_field, "The queries' text field, and the field the table shows")
      ->capture_default_str();
  cmd_search->add_option("--prompt", search.prompt, "Text put before every query, e.g. \"query: \"");
  cmd_search->add_option("--prompt-name", search.prompt_name, "A prompt of the model's config, by name (\"query\")");
  cmd_search->add_flag("--approximate", search.approximate,
                       "Search an HNSW index instead of scanning every row (built on first use; says its recall@10)");
  cmd_search->add_option("--index", search.index,
                         "With --approximate: the index file (default: beside a SQLite store, STORE.TABLE.hnsw)");
  cmd_search->add_option("--ef", search.ef, "With --approximate: candidates kept while searching (more: better recall)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd_search->add_option("--format", search.format, "auto: a table on a terminal, JSON lines otherwise")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "json", "table"}));

#ifdef SLUICE_CODE_INDEX
  ChunkArgs chunk;
  auto* cmd_chunk = app.add_subcommand(
      "chunk", "Cut a source tree into chunks by syntax (functions, classes...), as JSONL that embed reads");
  cmd_chunk->add_option("root", chunk.root, "The tree's folder")->required()->check(CLI::ExistingDirectory);
  cmd_chunk->add_option("-o,--output", chunk.output, "Output JSONL file, or - for stdout")->capture_default_str();
  cmd_chunk->add_option("--model", chunk.model, "Model folder: its tokenizer counts the tokens of each chunk")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd_chunk->add_option("--chunk-tokens", chunk.chunk_tokens,
                        "Most tokens a chunk's text may have, special tokens and header line included (default: the "
                        "model's limit)")
      ->check(CLI::Range(1, 1 << 20));
  cmd_chunk->add_option("--include", chunk.include, "Only paths matching this glob (gitignore syntax; repeatable)");
  cmd_chunk->add_option("--exclude", chunk.exclude, "Leave out paths matching this glob (gitignore syntax; repeatable)");
  cmd_chunk->add_option("--max-file-bytes", chunk.max_file_bytes, "Larger files are skipped")
      ->capture_default_str()
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40));
  cmd_chunk->add_option("--files", chunk.files_output,
                        "Also write one JSON line per file: its status (indexed, partial, skipped, failed) and reason");

  IndexArgs index;
  auto* cmd_index = app.add_subcommand(
      "index", "Index a source tree into a store: chunked by syntax, embedded, one transaction per file, incremental");
  cmd_index->add_option("root", index.root, "The tree's folder")->required()->check(CLI::ExistingDirectory);
  cmd_index->add_option("-o,--output", index.store, "The store: sqlite:PATH, postgresql://...")->capture_default_str();
  cmd_index
      ->add_option("--model", index.model,
                   "Hugging Face model folder; default: the bundled Universal Sentence Encoder Lite")
      ->check(CLI::ExistingDirectory);
  cmd_index->add_option("--chunk-tokens", index.chunk_tokens,
                        "Most tokens a chunk's text may have, special tokens and header line included (default: the "
                        "model's limit)")
      ->check(CLI::Range(1, 1 << 20));
  cmd_index->add_option("--include", index.include, "Only paths matching this glob (gitignore syntax; repeatable)");
  cmd_index->add_option("--exclude", index.exclude, "Leave out paths matching this glob (gitignore syntax; repeatable)");
  cmd_index->add_option("--max-file-bytes", index.max_file_bytes, "Larger files are skipped")
      ->capture_default_str()
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40));
  cmd_index->add_option("--events", index.events, "Write every event as a JSON line to PATH, or - for standard output");
  cmd_index->add_option("--progress", index.progress, "auto: live line on a terminal, plain lines otherwise")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "always", "never"}));
  cmd_index->add_option("--dead-letter", index.dead_letter, "Write the chunks that could not be embedded here (JSONL)");
  cmd_index->add_option("--precision", index.precision, "Linear layers in fp32, bf16 or dynamic int8")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16", "int8"}));
  cmd_index->add_option("--threads", index.threads, "Cores the model uses (0 = all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd_index->add_option("--model-workers", index.model_workers, "Model calls at once (0 = chosen by core count)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd_index->add_option("--batch-size", index.batch_size, "Chunks per model call, at most")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{65536}));
  cmd_index->add_option("--max-batch-tokens", index.max_batch_tokens, "Padded tokens per model call, at most")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 24));
  add_nats_options(*cmd_index, index.nats, true);
  cmd_index->add_option("--sort-window", index.sort_window,
                        "Chunks sorted by length together; files are written as their window completes (0: 64, or "
                        "the batch size when smaller)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 20));

  GraphArgs graph;
  auto* cmd_graph = app.add_subcommand(
      "graph", "The code index's most central chunks (PageRank over imports, calls and bases), or the graph as DOT "
               "or GraphML");
  cmd_graph->add_option("store", graph.store, "The store: sqlite:PATH (or postgresql://...)")->required();
  cmd_graph->add_option("--top", graph.top, "Chunks listed, by PageRank")->capture_default_str()->check(
      CLI::Range(std::size_t{1}, std::size_t{1} << 30));
  cmd_graph->add_option("--format", graph.format, "auto: a table on a terminal, JSON lines otherwise")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "json", "table"}));
  cmd_graph->add_option("--export", graph.export_format, "Write the whole graph instead: dot (Graphviz) or graphml")
      ->check(CLI::IsMember({"dot", "graphml"}));
  cmd_graph->add_option("-o,--output", graph.output, "With --export: the file (- for standard output)")
      ->capture_default_str();
#endif

  try {
    app.parse(argc, argv);
    if (*cmd_search && search.queries.empty() && search.queries_file.empty()) {
      throw CLI::ValidationError("search", "give --query TEXT or --queries FILE");
    }
    if (*cmd_tokenize && tok.output.empty() && !tok.stats) {
      throw CLI::ValidationError("tokenize", "give -o OUTPUT, --stats, or both");
    }
    embed.on_error_given = cmd_embed->count("--on-error") > 0;
    embed.table_given = cmd_embed->count("--table") > 0;
    embed.batch_limits_given = cmd_embed->count("--batch-size") + cmd_embed->count("--max-batch-tokens") > 0;
  } catch (const CLI::ParseError& e) {
    int r = app.exit(e);
    return r == 0 ? kExitOk : kExitUsage;
  }

  try {
    if (*cmd_embed) return run_embed(embed);
    if (*cmd_worker) return run_worker(worker);
    if (*cmd_serve) return run_serve(serve);
    if (*cmd_validate) return run_validate(validate_input, vo);
    if (*cmd_tokenize) return run_tokenize(tok);
    if (*cmd_search) return run_search(search);
#ifdef SLUICE_CODE_INDEX
    if (*cmd_chunk) return run_chunk(chunk);
    if (*cmd_index) return run_index(index);
    if (*cmd_graph) return run_graph(graph);
#endif
  } catch (const sluice::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    if (!e.detail().empty()) fmt::print(stderr, "detail: {}\n", e.detail());
    return e.code() == sluice::ErrorCode::invalid_argument ? kExitUsage : kExitFailure;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return kExitFailure;
  }
  return kExitUsage;
}
