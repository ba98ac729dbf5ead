#include "search_command.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <utility>

#include <fmt/format.h>
#include <simdjson.h>

#include <sluice/error.hpp>
#include <sluice/remote.hpp>
#include <sluice/event_stream.hpp>
#include <sluice/file_roles.hpp>
#include <sluice/model.hpp>
#include <sluice/pipeline.hpp>
#include <sluice/record_stream.hpp>
#include <sluice/store.hpp>
#include <sluice/tokenizer.hpp>

#include "exit_codes.hpp"
#include "run_support.hpp"

namespace pipeline_run {

namespace {

// Queries embedded and searched this many at a time: one scan of the table each.
constexpr std::size_t kQueriesPerScan = 4096;

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
  return out;
}

int terminal_width() {
  winsize ws{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40) return ws.ws_col;
  return 100;
}

// One line of text for the table: whitespace runs as one space, cut to `width` code points.
std::string one_line(std::string_view text, std::size_t width) {
  std::string out;
  std::size_t points = 0;
  bool space = false;
  for (std::size_t i = 0; i < text.size() && points < width;) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const std::size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
      space = !out.empty();
      ++i;
      continue;
    }
    if (space) {
      out.push_back(' ');
      ++points;
      space = false;
    }
    out.append(text.substr(i, len));
    ++points;
    i += len;
  }
  if (points >= width && !out.empty()) out += "…";
  return out;
}

// "path:start-end" and the qualified name of a code index chunk's record; nothing for another.
std::optional<std::pair<std::string, std::string>> code_location(const std::string& record) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(record).get(doc) != simdjson::SUCCESS) return std::nullopt;
  std::string_view path, name;
  std::int64_t start = 0, end = 0;
  if (doc["path"].get(path) != simdjson::SUCCESS || doc["start_line"].get(start) != simdjson::SUCCESS ||
      doc["end_line"].get(end) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  if (doc["name"].get(name) != simdjson::SUCCESS) name = {};
  return std::make_pair(fmt::format("{}:{}-{}", path, start, end), std::string(name));
}

}  // namespace

int run_search(const SearchArgs& args) {
  sluice::StoreOptions so;
  so.uri = args.store;
  so.table = args.table;
  so.read_only = true;  // search writes nothing: SELECT is enough, and no file is created
  sluice::StoreTableInfo info;
  try {
    info = sluice::describe_store(so);
  } catch (const sluice::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return kExitUsage;
  }
  if (!info.exists) {
    fmt::print(stderr, "error: {} has no table {} of sluice's: embed into it first (pipeline-run embed IN -o {} "
               "--table {})\n", sluice::redact_uri(args.store), args.table, sluice::redact_uri(args.store), args.table);
    return kExitUsage;
  }

  // The queries, as records of the text field.
  std::vector<sluice::Record> records;
  for (const std::string& q : args.queries) {
    sluice::Record r;
    r.json = "{" + json_string(args.text_field) + ":" + json_string(q) + "}";
    r.line = records.size() + 1;
    records.push_back(std::move(r));
  }
  if (!args.queries_file.empty()) {
    auto stream = sluice::RecordStream::from_jsonl(args.queries_file);
    while (auto r = stream.next()) records.push_back(std::move(*r));
  }

  // The model that made the vectors, as it made them: its pooling, normalisation, precision
  // and dimensions. Its files must be those the store records (by content).
  sluice::ModelOptions mo;
  const std::filesystem::path dir = args.model.empty() ? std::filesystem::path(info.model) : args.model;
  mo.pooling = parse_pooling(info.pooling).value_or(sluice::Pooling::mean);
  mo.normalize = info.normalized;
  sluice::precision_from_name(info.precision, mo.precision);
  std::shared_ptr<sluice::Model> model;
  std::shared_ptr<sluice::Tokenizer> tokenizer;
  if (args.remote.given) {
    // A table made through an API (embed --remote): the queries go to the same API, counted the
    // same way, or the identity check below refuses.
    RemoteArgs remote = args.remote;
    try {
      tokenizer = prepare_remote(remote, args.model);
      model = sluice::connect_remote_model(remote.remote);
    } catch (const sluice::Error& e) {
      fmt::print(stderr, "error: {}\n", e.what());
      return e.code() == sluice::ErrorCode::invalid_argument ? kExitUsage : kExitFailure;
    }
  } else {
    if (info.model.starts_with("remote ")) {
      fmt::print(stderr, "error: the table's vectors were made by {}: give the same --remote and --remote-model (and "
                         "--model, if the run had one) to embed the queries there\n",
                 info.model);
      return kExitUsage;
    }
    try {
      model = sluice::Model::load(dir, mo);
      tokenizer = sluice::Tokenizer::from_file(dir / "tokenizer.json");
    } catch (const sluice::Error& e) {
      fmt::print(stderr, "error: {}{}\n", e.what(),
                 args.model.empty() ? " (the folder the store records; give --model to point elsewhere)" : "");
      return kExitUsage;
    }
  }
  const std::string identity = sluice::model_identity(model->info());
  if (identity != info.model_identity) {
    fmt::print(stderr,
               "error: the table's vectors were made by another model than {}:\n  table: {}\n  model: {}\n"
               "Give --model the folder of the model that made them.\n",
               dir.string(), info.model_identity, identity);
    return kExitUsage;
  }

  // The approximate index, opened (or built: one scan, then recall measured on rows of the
  // table as held-out queries) before the queries are embedded.
  std::unique_ptr<sluice::ApproximateIndex> index;
  if (args.approximate) {
    sluice::ApproximateIndexOptions io;
    io.path = args.index;
    if (io.path.empty()) {
      if (!args.store.starts_with("sqlite:")) {
        fmt::print(stderr, "error: --approximate on PostgreSQL needs --index PATH: the file to keep the index in\n");
        return kExitUsage;
      }
      io.path = fmt::format("{}.{}.hnsw", *sluice::sqlite_store_path(args.store), args.table);
    }
    io.ef_search = args.ef;
    // The index's files are never the store's (nor one another).
    if (args.store.starts_with("sqlite:")) {
      try {
        sluice::check_distinct_files({{"store", *sluice::sqlite_store_path(args.store)},
                                      {"approximate index", io.path},
                                      {"approximate index's metadata", io.path + ".meta"}});
      } catch (const sluice::Error& e) {
        fmt::print(stderr, "error: {}\n", e.what());
        return kExitUsage;
      }
    }
    fmt::print(stderr, "approximate index {}: opening (built from one scan when missing or stale)\n", io.path);
    index = sluice::ApproximateIndex::open(so, io);
    const auto& ii = index->info();
    fmt::print(stderr, "approximate index {}: {} rows, recall@10 {:.3f} against exact search over {} rows of the "
               "table as queries{}\n",
               io.path, ii.rows, ii.recall_at_10, ii.recall_queries,
               ii.built_now ? fmt::format(" (built now in {:.1f} s)", ii.build_s) : std::string());
  }

  const bool table = args.format == "table" || (args.format == "auto" && isatty(STDOUT_FILENO));
  const bool many = records.size() > 1;
  const int width = terminal_width();
  for (std::size_t first = 0; first < records.size(); first += kQueriesPerScan) {
    std::vector<sluice::Record> group(records.begin() + static_cast<std::ptrdiff_t>(first),
                                      records.begin() + static_cast<std::ptrdiff_t>(
                                                            std::min(records.size(), first + kQueriesPerScan)));
    sluice::PipelineOptions po;
    po.text_field = args.text_field;
    po.prompt = args.prompt;
    po.prompt_name = args.prompt_name;
    po.dimensions = info.dimensions < model->info().dimensions ? info.dimensions : 0;
    po.progress_interval_s = 0;
    po.on_error = sluice::OnError::fail;
    sluice::Pipeline pipeline(po, model, tokenizer);
    pipeline.set_source(sluice::RecordStream::from_records(group).into_source());
    sluice::Collected got = sluice::collect(pipeline);
    if (got.summary.status != sluice::RunStatus::completed) {
      fmt::print(stderr, "error: a query could not be embedded: {}\n", got.summary.error);
      return kExitInvalidInput;
    }
    std::vector<std::vector<float>> vectors;
    for (auto& r : got.records) vectors.push_back(std::move(r.embedding));
    const auto results = index ? index->search(vectors, args.k) : sluice::search_store(so, vectors, args.k);
    for (std::size_t qi = 0; qi < results.size(); ++qi) {
      const sluice::Record& query = group[qi];
      const std::size_t number = first + qi + 1;  // the queries' order: the -q ones, then the file's
      if (table) {
        if (many || qi > 0) fmt::print("\n");
        const auto text = sluice::string_field(query, args.text_field);
        fmt::print("query {}: {}\n", number, one_line(text ? *text : query.json, static_cast<std::size_t>(width) - 12));
        fmt::print("{:>4}  {:>6}  {:<20}  {}\n", "rank", "score", "id", args.text_field);
        std::size_t rank = 0;
        for (const auto& hit : results[qi]) {
          sluice::Record r;
          r.json = hit.record;
          const auto hit_text = sluice::string_field(r, args.text_field);
          std::string id = one_line(hit.id, 20);
          std::string shown = hit_text ? *hit_text : hit.record;
          // A chunk of the code index: where it is (path:start-end) and its qualified name.
          if (auto where = code_location(hit.record)) {
            id = where->first;
            if (!where->second.empty()) shown = where->second;
          }
          const int room = std::max(10, width - 38 - std::max(0, static_cast<int>(id.size()) - 20));
          fmt::print("{:>4}  {:>6.4f}  {:<20}  {}\n", ++rank, hit.score, id,
                     one_line(shown, static_cast<std::size_t>(room)));
        }
      } else {
        std::size_t rank = 0;
        for (const auto& hit : results[qi]) {
          std::string line = "{";
          if (many) line += fmt::format("\"query\":{},", number);
          line += fmt::format("\"rank\":{},\"id\":{},\"score\":{:.6f},\"record\":{}}}\n", ++rank, json_string(hit.id),
                              hit.score, hit.record);
          std::fwrite(line.data(), 1, line.size(), stdout);
        }
      }
    }
  }
  std::fflush(stdout);
  return kExitOk;
}

}  // namespace pipeline_run
