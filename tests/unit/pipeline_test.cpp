// The engine end to end in-process, on the tiny test model (tests/test-models/tiny: the real
// bert-base-uncased vocabulary, a 2-layer BERT with fixed random weights).

#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <simdjson.h>
#include <uv.h>

#include <sluice/event_stream.hpp>
#include <sluice/pipeline.hpp>
#include <sluice/record_stream.hpp>

namespace fs = std::filesystem;
using namespace sluice;

namespace {

fs::path models_dir() {
  const char* env = std::getenv("SLUICE_TEST_MODELS");
  REQUIRE_MESSAGE(env != nullptr, "SLUICE_TEST_MODELS is not set (run through meson test)");
  return fs::path(env);
}

struct Shared {
  std::shared_ptr<Model> model;
  std::shared_ptr<Tokenizer> tokenizer;
};

// Loaded once: every test uses the same tiny model.
Shared& tiny() {
  static Shared s = [] {
    Shared r;
    ModelOptions mo;
    mo.threads = 1;
    r.model = std::shared_ptr<Model>(Model::load(models_dir() / "tiny", mo));
    r.tokenizer = std::shared_ptr<Tokenizer>(Tokenizer::from_file(models_dir() / "tiny" / "tokenizer.json"));
    return r;
  }();
  return s;
}

struct TempDir {
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sluice-test-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path path;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < s.size()) {
    std::size_t nl = s.find('\n', start);
    if (nl == std::string::npos) nl = s.size();
    out.push_back(s.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

std::string make_input(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) {
    s +=
        fmt::format("{{\"id\": {}, \"text\": \"record number {} says {}\", \"big\": 123456789012345678901234567890}}\n",
                    i, i, std::string(static_cast<std::size_t>(i % 7), 'x'));
  }
  return s;
}

PipelineOptions base_options(const TempDir& dir) {
  PipelineOptions o;
  o.input = (dir.path / "in.jsonl").string();
  o.output = (dir.path / "out.jsonl").string();
  o.batch_size = 4;
  o.max_batch_tokens = 0;  // input-order batches of 4, windows of 4: checkpoints every 4 records
  o.sort_window = 0;
  o.progress_interval_s = 0;
  o.pipeline_id = "test";
  return o;
}

// The added array only: the rest of the line keeps numbers (1e400) that no double holds.
std::vector<float> parse_embedding(const std::string& line) {
  const std::string key = ",\"embedding\":";
  auto at = line.rfind(key);
  REQUIRE(at != std::string::npos);
  std::string array = line.substr(at + key.size(), line.size() - at - key.size() - 1);
  simdjson::dom::parser p;
  simdjson::dom::element doc = p.parse(simdjson::padded_string(array));
  std::vector<float> v;
  for (double d : doc.get_array()) v.push_back(static_cast<float>(d));
  return v;
}

}  // namespace

TEST_CASE("embeds every record in input order, keeping every input byte") {
  TempDir dir;
  auto opts = base_options(dir);
  const std::string input = make_input(37);
  write_file(opts.input, input);
  opts.checkpoint = (dir.path / "out.checkpoint").string();

  Pipeline pipeline(opts, tiny().model, tiny().tokenizer);
  std::vector<PipelineEvent> events;
  pipeline.subscribe(EventFilter::all(), [&](const PipelineEvent& e) { events.push_back(e); });
  RunSummary s = pipeline.run();

  CHECK(s.status == RunStatus::completed);
  CHECK(s.completed == 37);
  CHECK(s.failed == 0);
  auto in_lines = split_lines(input);
  auto out_lines = split_lines(read_file(opts.output));
  REQUIRE(out_lines.size() == in_lines.size());
  const std::size_t dims = tiny().model->info().dimensions;
  for (std::size_t i = 0; i < in_lines.size(); ++i) {
    // The input object up to its closing brace, byte for byte, then the added field.
    const std::string& in = in_lines[i];
    REQUIRE(out_lines[i].compare(0, in.size() - 1, in, 0, in.size() - 1) == 0);
    CHECK(out_lines[i].substr(in.size() - 1, 14) == ",\"embedding\":[");
    auto v = parse_embedding(out_lines[i]);
    REQUIRE(v.size() == dims);
    double norm = 0;
    for (float x : v) norm += double(x) * x;
    CHECK(std::sqrt(norm) == doctest::Approx(1.0).epsilon(1e-5));
  }

  // Envelope: sequence numbers without gaps, first and last events.
  REQUIRE(events.size() > 3);
  for (std::size_t i = 0; i < events.size(); ++i) {
    CHECK(events[i].seq == i + 1);
    CHECK(events[i].pipeline_id == "test");
  }
  CHECK(std::holds_alternative<PipelineStarted>(events.front().payload));
  CHECK(std::holds_alternative<PipelineFinished>(events.back().payload));
  std::set<std::size_t> kinds;
  std::map<std::uint64_t, int> started, completed;
  for (const auto& e : events) {
    kinds.insert(e.payload.index());
    if (auto* d = std::get_if<DocumentStarted>(&e.payload)) started[d->index] = static_cast<int>(e.seq);
    if (auto* d = std::get_if<DocumentCompleted>(&e.payload)) {
      completed[d->index] = static_cast<int>(e.seq);
      CHECK(d->location.line == d->index + 1);
      CHECK(d->tokens > 2);
    }
  }
  CHECK(started.size() == 37);
  CHECK(completed.size() == 37);
  for (auto [index, seq] : completed) CHECK(started.at(index) < seq);
  // Every kind but DocumentFailed and BatchProgress (progress_interval_s = 0 publishes one at the end).
  CHECK(kinds.count(EventFilter::index_of<Checkpointed>()) == 1);
  CHECK(kinds.count(EventFilter::index_of<StageStateChanged>()) == 1);
  CHECK(kinds.count(EventFilter::index_of<BatchProgress>()) == 1);

  // The final checkpoint names the end of input and of output.
  auto cp = read_file(opts.checkpoint);
  CHECK(cp.find(fmt::format("\"input_offset\":{}", input.size())) != std::string::npos);
  CHECK(cp.find(fmt::format("\"output_offset\":{}", fs::file_size(opts.output))) != std::string::npos);
  CHECK(cp.find("\"finished\":true") != std::string::npos);
}

TEST_CASE("pipeline output equals the model called directly on the same tokens") {
  TempDir dir;
  auto opts = base_options(dir);
  write_file(opts.input, "{\"text\":\"Hello, World!\"}\n{\"text\":\"a longer sentence about rivers and deltas\"}\n");
  Pipeline pipeline(opts, tiny().model, tiny().tokenizer);
  REQUIRE(pipeline.run().status == RunStatus::completed);
  auto out = split_lines(read_file(opts.output));
  REQUIRE(out.size() == 2);
  const char* texts[] = {"Hello, World!", "a longer sentence about rivers and deltas"};
  const std::size_t dims = tiny().model->info().dimensions;
  for (int i = 0; i < 2; ++i) {
    Encoding enc = tiny().tokenizer->encode(texts[i]);
    TokenBatch b;
    b.batch = 1;
    b.seq_len = static_cast<std::uint32_t>(enc.ids.size());
    for (auto id : enc.ids) {
      b.ids.push_back(id);
      b.attention_mask.push_back(1);
      b.type_ids.push_back(0);
    }
    std::vector<float> direct(dims);
    tiny().model->embed(b, direct);
    auto v = parse_embedding(out[static_cast<std::size_t>(i)]);
    REQUIRE(v.size() == dims);
    double dot = 0;
    for (std::size_t k = 0; k < dims; ++k) dot += double(v[k]) * direct[k];
    // Padding to the batch's longest record must not change the result.
    CHECK(dot > 0.99999);
  }
}

TEST_CASE("bad records are reported with file:line and field, counted, and dead-lettered") {
  TempDir dir;
  auto opts = base_options(dir);
  opts.on_error = OnError::skip;
  opts.dead_letter = (dir.path / "dead.jsonl").string();
  write_file(opts.input,
             "{\"text\":\"fine\"}\n"
             "{\"text\": 12}\n"
             "not json\n"
             "\n"
             "{\"body\":\"no text\"}\n"
             "[1,2]\n"
             "{\"text\":\"also fine\",\"n\":1e400}\n");
  Pipeline pipeline(opts, tiny().model, tiny().tokenizer);
  std::vector<DocumentFailed> failures;
  pipeline.subscribe(EventFilter::of<DocumentFailed>(),
                     [&](const PipelineEvent& e) { failures.push_back(std::get<DocumentFailed>(e.payload)); });
  RunSummary s = pipeline.run();
  CHECK(s.status == RunStatus::completed);
  CHECK(s.completed == 2);
  CHECK(s.failed == 4);
  REQUIRE(failures.size() == 4);
  CHECK(failures[0].location.line == 2);
  CHECK(failures[0].code == ErrorCode::field_not_string);
  CHECK(failures[0].field == "text");
  CHECK(failures[0].message.rfind(opts.input + ":2: ", 0) == 0);
  CHECK(failures[1].location.line == 3);
  CHECK(failures[1].code == ErrorCode::invalid_json);
  CHECK(failures[2].location.line == 5);
  CHECK(failures[2].code == ErrorCode::missing_field);
  CHECK(failures[2].message.find("field \"text\" is missing") != std::string::npos);
  CHECK(failures[3].location.line == 6);
  CHECK(failures[3].code == ErrorCode::not_an_object);

  auto out = split_lines(read_file(opts.output));
  REQUIRE(out.size() == 2);
  CHECK(out[0].rfind("{\"text\":\"fine\",\"embedding\":[", 0) == 0);
  CHECK(out[1].rfind("{\"text\":\"also fine\",\"n\":1e400,\"embedding\":[", 0) == 0);

  auto dead = split_lines(read_file(opts.dead_letter));
  REQUIRE(dead.size() == 4);
  CHECK(dead[0].find("\"line\":2") != std::string::npos);
  CHECK(dead[0].find("\"error\":\"field_not_string\"") != std::string::npos);
  CHECK(dead[1].find("\"record\":\"not json\"") != std::string::npos);
}

TEST_CASE("--on-error fail stops at the first bad record; what came before is written") {
  TempDir dir;
  auto opts = base_options(dir);
  std::string input = make_input(10) + "{\"text\": null}\n" + make_input(10);
  write_file(opts.input, input);
  Pipeline pipeline(opts, tiny().model, tiny().tokenizer);
  RunSummary s = pipeline.run();
  CHECK(s.status == RunStatus::failed);
  CHECK(s.error.find(":11: ") != std::string::npos);
  CHECK(s.completed == 10);
  CHECK(split_lines(read_file(opts.output)).size() == 10);
}

TEST_CASE("memory bound: the reader pauses when the in-flight limit is reached") {
  TempDir dir;
  auto opts = base_options(dir);
  opts.max_in_flight_records = 8;
  opts.read_chunk_bytes = 256;  // about two records a read
  write_file(opts.input, make_input(200));
  Pipeline pipeline(opts, tiny().model, tiny().tokenizer);
  std::uint64_t paused = 0;
  std::uint64_t max_in_flight = 0;
  std::uint64_t started = 0, done = 0;
  pipeline.subscribe(EventFilter::all(), [&](const PipelineEvent& e) {
    if (auto* c = std::get_if<StageStateChanged>(&e.payload); c && c->stage == Stage::reader && c->to == StageState::paused) ++paused;
    if (std::holds_alternative<DocumentStarted>(e.payload)) ++started;
    if (std::holds_alternative<DocumentCompleted>(e.payload)) ++done;
    max_in_flight = std::max(max_in_flight, started - done);
  });
  RunSummary s = pipeline.run();
  CHECK(s.completed == 200);
  CHECK(paused > 0);
  // The bound, plus what one read chunk can hold, plus the rest of an open batch.
  CHECK(max_in_flight <= 8 + 256 / 40 + 4);
  CHECK(split_lines(read_file(opts.output)).size() == 200);
}

TEST_CASE("a lazy record stream as source and a custom sink; collect()") {
  TempDir dir;
  auto opts = base_options(dir);
  write_file(opts.input, make_input(50));
  auto stream = RecordStream::from_jsonl(opts.input)
                    .filter([](const Record& r) { return r.line % 2 == 1; })
                    .map([](Record r) {
                      r.text = "query: " + string_field(r, "text").value_or("");
                      return r;
                    })
                    .limit(10);
  Pipeline pipeline(opts, tiny().model, tiny().tokenizer);
  pipeline.set_source(std::move(stream).into_source());
  const Collected collected = collect(pipeline);
  const auto& records = collected.records;
  CHECK(collected.failed.empty());
  CHECK(collected.summary.completed == 10);
  REQUIRE(records.size() == 10);
  for (std::size_t i = 0; i < records.size(); ++i) {
    CHECK(records[i].index == i);
    CHECK(records[i].line == 2 * i + 1);
    CHECK(records[i].embedding.size() == tiny().model->info().dimensions);
    CHECK(records[i].json.rfind(fmt::format("{{\"id\": {},", 2 * i), 0) == 0);
  }
  CHECK_FALSE(fs::exists(opts.output));
}

TEST_CASE("record stream operators are lazy and batch") {
  int pulled = 0;
  std::vector<Record> recs(100);
  for (int i = 0; i < 100; ++i) recs[static_cast<std::size_t>(i)].line = static_cast<std::uint64_t>(i + 1);
  auto base = RecordStream::from_records(std::move(recs));
  auto counted = std::move(base).map([&](Record r) {
    ++pulled;
    return r;
  });
  auto batches = std::move(counted).limit(25).batch(10);
  std::vector<std::size_t> sizes;
  for (auto& b : batches) sizes.push_back(b.size());
  CHECK(sizes == std::vector<std::size_t>{10, 10, 5});
  CHECK(pulled == 25);  // nothing beyond the limit was read
}

TEST_CASE("collect() says what failed, refuses a pipeline with a sink, and throws a failure's own code") {
  TempDir dir;
  auto opts = base_options(dir);
  std::string input = make_input(6) + "{\"id\": 99}\n" + make_input(3);
  write_file(opts.input, input);
  {
    auto skip = opts;
    skip.on_error = OnError::skip;
    Pipeline pipeline(skip, tiny().model, tiny().tokenizer);
    const Collected c = collect(pipeline);
    CHECK(c.records.size() == 9);
    REQUIRE(c.failed.size() == 1);
    CHECK(c.failed[0].code == ErrorCode::missing_field);
    CHECK(c.failed[0].location.line == 7);
    CHECK(c.summary.failed == 1);
  }
  {
    Pipeline pipeline(opts, tiny().model, tiny().tokenizer);  // OnError::fail
    try {
      collect(pipeline);
      FAIL("expected the run to fail");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::missing_field);
      CHECK(std::string(e.what()).find(":7: ") != std::string::npos);
    }
  }
  {
    struct Ignore : Sink {
      void write(std::span<const EmbeddedRecord>) override {}
    };
    Pipeline pipeline(opts, tiny().model, tiny().tokenizer);
    pipeline.set_sink(std::make_unique<Ignore>());
    try {
      collect(pipeline);
      FAIL("expected a refusal");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::invalid_argument);
    }
  }
}

TEST_CASE("an EventStream whose run cannot start throws its error from next(), with no invented event") {
  TempDir dir;
  auto opts = base_options(dir);  // no input file
  auto pipeline = std::make_unique<Pipeline>(opts, tiny().model, tiny().tokenizer);
  EventStream events(std::move(pipeline));
  try {
    auto e = events.next();
    FAIL("expected the setup error, got an event");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::io_error);
    CHECK(std::string(e.what()).find("cannot open input") != std::string::npos);
  }
  CHECK_FALSE(events.next().has_value());
}

TEST_CASE("events can be pulled; the stream ends with PipelineFinished") {
  TempDir dir;
  auto opts = base_options(dir);
  write_file(opts.input, make_input(20));
  auto pipeline = std::make_unique<Pipeline>(opts, tiny().model, tiny().tokenizer);
  EventStream events(std::move(pipeline), EventFilter::without_documents(), 2);
  std::vector<PipelineEvent> got;
  for (const PipelineEvent& e : events) got.push_back(e);
  REQUIRE(!got.empty());
  CHECK(std::holds_alternative<PipelineStarted>(got.front().payload));
  REQUIRE(std::holds_alternative<PipelineFinished>(got.back().payload));
  CHECK(std::get<PipelineFinished>(got.back().payload).summary.completed == 20);
  for (const auto& e : got) CHECK_FALSE(std::holds_alternative<DocumentCompleted>(e.payload));
}

TEST_CASE("stop() drains and checkpoints at a batch boundary; resume gives the uninterrupted bytes") {
  TempDir dir;
  auto opts = base_options(dir);
  opts.checkpoint = (dir.path / "cp.json").string();
  write_file(opts.input, make_input(400));
  opts.max_in_flight_records = 16;
  opts.read_chunk_bytes = 512;

  // The uninterrupted run, for reference.
  auto ref_opts = opts;
  ref_opts.output = (dir.path / "ref.jsonl").string();
  ref_opts.checkpoint.clear();
  {
    Pipeline ref(ref_opts, tiny().model, tiny().tokenizer);
    REQUIRE(ref.run().status == RunStatus::completed);
  }

  Pipeline pipeline(opts, tiny().model, tiny().tokenizer);
  pipeline.subscribe(EventFilter::of<DocumentCompleted>(), [&](const PipelineEvent& e) {
    if (std::get<DocumentCompleted>(e.payload).index == 21) pipeline.stop();
  });
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  RunSummary s;
  int finished = 0;
  pipeline.start(&loop, [&](const RunSummary& r) {
    s = r;
    ++finished;
  });
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);  // every handle closed
  CHECK(finished == 1);
  CHECK(s.status == RunStatus::stopped);
  CHECK(s.completed > 21);
  CHECK(s.completed < 400);
  const auto out = read_file(opts.output);
  CHECK(split_lines(out).size() == s.completed);

  // The checkpoint names a batch boundary: the records of the batch after it are done again.
  simdjson::dom::parser p;
  simdjson::dom::element cp = p.parse(simdjson::padded_string(read_file(opts.checkpoint)));
  const std::uint64_t done = cp["records_done"].get_uint64();
  const std::uint64_t out_offset = cp["output_offset"].get_uint64();
  CHECK(done % opts.batch_size == 0);
  CHECK(done <= s.completed);
  CHECK(done > 0);
  CHECK_FALSE(bool(cp["finished"].get_bool()));
  const auto ref = read_file(ref_opts.output);
  std::size_t end = 0;
  for (std::uint64_t i = 0; i < done; ++i) end = ref.find('\n', end) + 1;
  CHECK(out_offset == end);
  CHECK(out.compare(0, end, ref, 0, end) == 0);

  // Resume: the output is cut back and finished; the bytes equal the uninterrupted run's.
  opts.resume = true;
  Pipeline resumed(opts, tiny().model, tiny().tokenizer);
  RunSummary r = resumed.run();
  CHECK(r.status == RunStatus::completed);
  CHECK(r.completed == 400);
  CHECK(read_file(opts.output) == ref);

  // Resuming a finished run does nothing and succeeds.
  Pipeline again(opts, tiny().model, tiny().tokenizer);
  RunSummary a = again.run();
  CHECK(a.status == RunStatus::completed);
  CHECK(a.completed == 400);
  CHECK(read_file(opts.output) == ref);
}

TEST_CASE("resume refuses a changed input or option, saying what changed") {
  TempDir dir;
  auto opts = base_options(dir);
  opts.checkpoint = (dir.path / "cp.json").string();
  write_file(opts.input, make_input(10));
  {
    Pipeline first(opts, tiny().model, tiny().tokenizer);
    REQUIRE(first.run().status == RunStatus::completed);
  }
  opts.resume = true;
  auto changed = opts;
  changed.text_field = "body";
  try {
    Pipeline p(changed, tiny().model, tiny().tokenizer);
    p.run();
    FAIL("expected a refusal");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
    CHECK(std::string(e.what()).find("text field \"body\"") != std::string::npos);
    CHECK(std::string(e.what()).find("text field \"text\"") != std::string::npos);
  }
  // A byte changed before the point the run had reached: refused, whatever the size and time.
  std::string edited = make_input(10);
  edited[edited.find("record") + 1] = 'E';
  write_file(opts.input, edited);
  try {
    Pipeline p(opts, tiny().model, tiny().tokenizer);
    p.run();
    FAIL("expected a refusal");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
    CHECK(std::string(e.what()).find("are not those the checkpoint's run read") != std::string::npos);
  }
  // Records appended after a finished run: refused (one run over the whole file would batch
  // them otherwise); trailing blank lines are not records.
  write_file(opts.input, make_input(11));
  try {
    Pipeline p(opts, tiny().model, tiny().tokenizer);
    p.run();
    FAIL("expected a refusal");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("it grew since") != std::string::npos);
  }
  write_file(opts.input, make_input(10) + "\n  \r\n");
  {
    Pipeline p(opts, tiny().model, tiny().tokenizer);
    CHECK(p.run().status == RunStatus::completed);
  }
}

TEST_CASE("token-budget batches sorted by length: input order kept, same vectors, same bytes every run") {
  TempDir dir;
  auto opts = base_options(dir);
  std::string input;
  for (int i = 0; i < 90; ++i) {
    std::string words;
    for (int w = 0; w < (i * 37) % 61 + 1; ++w) words += fmt::format("w{} ", (i * w) % 97);
    input += fmt::format("{{\"id\":{},\"text\":\"{}\"}}\n", i, words);
  }
  write_file(opts.input, input);
  auto one = opts;  // one record per batch: no padding at all
  one.batch_size = 1;
  one.output = (dir.path / "one.jsonl").string();
  const RunSummary single = Pipeline(one, tiny().model, tiny().tokenizer).run();
  REQUIRE(single.status == RunStatus::completed);
  // What the model was given: one call per record, the real tokens, each row padded up to
  // its planned length (exact up to 32, less than 1/16 more above).
  CHECK(single.model_calls == 90);
  CHECK(single.model_tokens == single.tokens);
  CHECK(single.padded_tokens >= single.model_tokens);
  CHECK(single.padded_tokens * 15 <= single.model_tokens * 16);
  CHECK(single.model_busy_s > 0);
  CHECK(single.model_busy_s <= single.elapsed_s);

  opts.batch_size = 64;
  opts.max_batch_tokens = 256;
  opts.sort_window = 32;
  std::vector<PipelineEvent> events;
  Pipeline sorted(opts, tiny().model, tiny().tokenizer);
  sorted.subscribe(EventFilter::of<PipelineStarted>(), [&](const PipelineEvent& e) { events.push_back(e); });
  const RunSummary batched = sorted.run();
  REQUIRE(batched.status == RunStatus::completed);
  REQUIRE(events.size() == 1);
  CHECK(std::get<PipelineStarted>(events[0].payload).max_batch_tokens == 256);
  CHECK(std::get<PipelineStarted>(events[0].payload).sort_window == 32);
  CHECK(batched.model_tokens == single.model_tokens);
  CHECK(batched.model_calls < 90);
  CHECK(batched.padded_tokens >= batched.model_tokens);
  CHECK(batched.padded_tokens <= batched.model_calls * 256);
  const auto first = read_file(opts.output);
  REQUIRE(Pipeline(opts, tiny().model, tiny().tokenizer).run().status == RunStatus::completed);
  CHECK(read_file(opts.output) == first);

  auto sorted_lines = split_lines(first);
  auto one_lines = split_lines(read_file(one.output));
  REQUIRE(sorted_lines.size() == 90);
  for (std::size_t i = 0; i < 90; ++i) {
    CHECK(sorted_lines[i].rfind(fmt::format("{{\"id\":{},", i), 0) == 0);
    auto a = parse_embedding(sorted_lines[i]);
    auto b = parse_embedding(one_lines[i]);
    double dot = 0;
    for (std::size_t k = 0; k < a.size(); ++k) dot += double(a[k]) * b[k];
    CHECK(dot > 0.99999);
  }
}

// Forwards to a model and records how many calls were inside embed() at once. Each call waits
// (up to 2 s) for a second one to arrive, so calls that may overlap are seen to.
class OverlapProbe : public Model {
 public:
  OverlapProbe(std::shared_ptr<Model> inner, bool concurrent) : inner_(std::move(inner)), concurrent_(concurrent) {}
  const ModelInfo& info() const override { return inner_->info(); }
  bool concurrent_embed() const noexcept override { return concurrent_; }
  void embed(const TokenBatch& batch, std::span<float> out) override {
    {
      std::unique_lock lock(mu_);
      ++inside_;
      most_ = std::max(most_, inside_);
      cv_.notify_all();
      cv_.wait_for(lock, std::chrono::seconds(2), [&] { return inside_ > 1; });
    }
    inner_->embed(batch, out);
    std::lock_guard lock(mu_);
    --inside_;
  }
  int most() {
    std::lock_guard lock(mu_);
    return most_;
  }

 private:
  std::shared_ptr<Model> inner_;
  bool concurrent_;
  std::mutex mu_;
  std::condition_variable cv_;
  int inside_ = 0, most_ = 0;
};

TEST_CASE("model_thread_layout: one single-threaded call per core up to 8, then 8 calls") {
  auto check = [](int threads, int workers, bool concurrent, int w, int t) {
    const ThreadLayout l = model_thread_layout(threads, workers, concurrent);
    CHECK_MESSAGE((l.workers == w && l.threads_per_worker == t),
                  fmt::format("{} threads, {} workers, concurrent {}: got {} x {}", threads, workers, concurrent,
                              l.workers, l.threads_per_worker));
  };
  check(1, 0, true, 1, 1);
  check(2, 0, true, 2, 1);
  check(8, 0, true, 8, 1);
  check(12, 0, true, 6, 2);
  check(16, 0, true, 8, 2);
  check(64, 0, true, 8, 8);
  check(2, 1, true, 1, 2);   // asked for: one call with both cores
  check(4, 3, true, 3, 1);   // the cores split evenly
  check(2, 5, true, 2, 1);   // at most one call per core
  check(16, 0, false, 1, 16);  // a model that takes one call at a time gets every thread
  const ThreadLayout all = model_thread_layout(0, 0, true);
  CHECK(all.workers * all.threads_per_worker >= 1);
}

TEST_CASE("concurrent model calls: same bytes, input order; one call at a time where the model asks") {
  TempDir dir;
  auto opts = base_options(dir);
  write_file(opts.input, make_input(90));
  opts.batch_size = 4;
  opts.sort_window = 16;
  opts.max_batch_tokens = 64;
  REQUIRE(tiny().model->concurrent_embed());  // a CPU model from Model::load

  opts.model_workers = 1;
  const RunSummary one = Pipeline(opts, tiny().model, tiny().tokenizer).run();
  REQUIRE(one.status == RunStatus::completed);
  CHECK(one.model_workers == 1);
  const std::string expected = read_file(opts.output);

  for (const bool concurrent : {true, false}) {
    CAPTURE(concurrent);
    auto probe = std::make_shared<OverlapProbe>(tiny().model, concurrent);
    opts.model_workers = 3;
    opts.threads = 3;  // calls are at most one per core
    opts.output = (dir.path / fmt::format("out-{}.jsonl", concurrent)).string();
    std::vector<PipelineEvent> started;
    Pipeline p(opts, probe, tiny().tokenizer);
    p.subscribe(EventFilter::of<PipelineStarted>(), [&](const PipelineEvent& e) { started.push_back(e); });
    const RunSummary s = p.run();
    REQUIRE(s.status == RunStatus::completed);
    CHECK(read_file(opts.output) == expected);
    CHECK(s.model_calls == one.model_calls);
    REQUIRE(started.size() == 1);
    const auto& st = std::get<PipelineStarted>(started[0].payload);
    if (concurrent) {
      CHECK(st.model_workers == 3);
      CHECK(s.model_workers == 3);
      CHECK(probe->most() >= 2);
      CHECK(s.model_busy_s <= 3 * s.elapsed_s);
    } else {
      CHECK(st.model_workers == 1);
      CHECK(probe->most() == 1);
    }
  }
}

TEST_CASE("a subscriber without per-document events never receives them") {
  TempDir dir;
  auto opts = base_options(dir);
  write_file(opts.input, make_input(5));
  Pipeline pipeline(opts, tiny().model, tiny().tokenizer);
  int docs = 0, total = 0;
  pipeline.subscribe(EventFilter::without_documents(), [&](const PipelineEvent& e) {
    ++total;
    if (std::holds_alternative<DocumentStarted>(e.payload) || std::holds_alternative<DocumentCompleted>(e.payload))
      ++docs;
  });
  pipeline.run();
  CHECK(docs == 0);
  CHECK(total > 0);
}

namespace {

// A sink whose records become durable later, on a thread of its own, as a database's would:
// write() holds them, commit() makes them durable after a delay. What a run left behind
// (durable records, the checkpoint it stored) lives in `Store`, which outlives the pipelines.
struct Store {
  std::mutex mutex;
  std::vector<EmbeddedRecord> held;        // written, not yet committed
  std::map<std::uint64_t, std::string> durable;  // index -> json, committed
  std::string checkpoint;                  // the last committed one
  std::vector<std::thread> threads;
  ~Store() {
    for (auto& t : threads) t.join();
  }
};

class DelayedSink : public Sink {
 public:
  DelayedSink(Store& store, bool keeps, int delay_ms = 3) : store_(store), keeps_(keeps), delay_ms_(delay_ms) {}
  std::string name() const override { return "test store"; }
  void open(const SinkRun& run) override {
    CHECK(run.dimensions == 32);
    CHECK_FALSE(run.model_identity.empty());
    CHECK(run.model_identity.find("pooling") != std::string::npos);
    if (!run.resume) {
      std::lock_guard lock(store_.mutex);
      store_.checkpoint.clear();
    }
  }
  void write(std::span<const EmbeddedRecord> records) override {
    std::lock_guard lock(store_.mutex);
    for (const auto& r : records) store_.held.push_back(r);
  }
  void commit(const std::string& checkpoint, std::function<void(CommitResult)> done) override {
    std::vector<EmbeddedRecord> batch;
    {
      std::lock_guard lock(store_.mutex);
      batch.swap(store_.held);
    }
    std::lock_guard lock(store_.mutex);
    store_.threads.emplace_back([this, batch = std::move(batch), checkpoint, done = std::move(done)] {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
      CommitResult result;
      std::lock_guard lock(store_.mutex);
      for (const auto& r : batch) {
        if (r.json.find("refuse me") != std::string::npos) {
          result.rejected.push_back({r.index, ErrorInfo{ErrorCode::store_rejected, "the test store refuses it", {}, {}},
                                     r.json});
        } else {
          store_.durable[r.index] = r.json;
        }
      }
      if (keeps_ && !checkpoint.empty()) store_.checkpoint = checkpoint;
      done(std::move(result));
    });
  }
  bool keeps_checkpoint() const override { return keeps_; }
  std::optional<std::string> load_checkpoint() override {
    std::lock_guard lock(store_.mutex);
    if (store_.checkpoint.empty()) return std::nullopt;
    return store_.checkpoint;
  }
  std::optional<std::uint64_t> verified_count() override {
    std::lock_guard lock(store_.mutex);
    return store_.durable.size() + extra_;
  }
  std::uint64_t extra_ = 0;  // a miscount, for the verification test

 private:
  Store& store_;
  bool keeps_;
  int delay_ms_;
};

}  // namespace

TEST_CASE("a sink that commits later: a record is done only once durable; what it refuses is a bad record") {
  TempDir dir;
  auto opts = base_options(dir);
  std::string input;
  for (int i = 0; i < 60; ++i) {
    input += fmt::format("{{\"id\": {}, \"text\": \"record {}{}\"}}\n", i, i, i % 17 == 5 ? " refuse me" : "");
  }
  write_file(opts.input, input);
  opts.on_error = OnError::skip;
  opts.dead_letter = (dir.path / "dead.jsonl").string();
  Store store;
  Pipeline pipeline(opts, tiny().model, tiny().tokenizer);
  pipeline.set_sink(std::make_unique<DelayedSink>(store, false));
  std::vector<std::uint64_t> completed, failed;
  bool all_durable = true;
  pipeline.subscribe(EventFilter::of<DocumentCompleted>(), [&](const PipelineEvent& e) {
    const auto index = std::get<DocumentCompleted>(e.payload).index;
    std::lock_guard lock(store.mutex);
    all_durable = all_durable && store.durable.count(index) == 1;
    completed.push_back(index);
  });
  pipeline.subscribe(EventFilter::of<DocumentFailed>(), [&](const PipelineEvent& e) {
    const auto& f = std::get<DocumentFailed>(e.payload);
    CHECK(f.code == ErrorCode::store_rejected);
    failed.push_back(f.index);
  });
  RunSummary s = pipeline.run();
  CHECK(s.status == RunStatus::completed);
  CHECK(all_durable);
  CHECK(failed == std::vector<std::uint64_t>{5, 22, 39, 56});
  CHECK(s.completed == 56);
  CHECK(s.failed == 4);
  REQUIRE(s.verified.has_value());
  CHECK(*s.verified == 56);
  CHECK(std::is_sorted(completed.begin(), completed.end()));
  const auto dead = split_lines(read_file(opts.dead_letter));
  REQUIRE(dead.size() == 4);
  CHECK(dead[0].find("\"line\":6") != std::string::npos);
  CHECK(dead[0].find("store_rejected") != std::string::npos);
  CHECK(dead[3].find("\"line\":57") != std::string::npos);
}

TEST_CASE("a slow sink slows reading: records in flight stay within the bound") {
  TempDir dir;
  auto opts = base_options(dir);
  write_file(opts.input, make_input(400));
  opts.max_in_flight_records = 24;
  opts.read_chunk_bytes = 256;
  Store store;
  Pipeline pipeline(opts, tiny().model, tiny().tokenizer);
  pipeline.set_sink(std::make_unique<DelayedSink>(store, false, 20));  // 20 ms a commit
  std::uint64_t started = 0, done = 0, most = 0, paused = 0;
  pipeline.subscribe(EventFilter::all(), [&](const PipelineEvent& e) {
    if (std::holds_alternative<DocumentStarted>(e.payload)) ++started;
    if (std::holds_alternative<DocumentCompleted>(e.payload)) ++done;
    if (auto* c = std::get_if<StageStateChanged>(&e.payload); c && c->to == StageState::paused) ++paused;
    most = std::max(most, started - done);
  });
  RunSummary s = pipeline.run();
  CHECK(s.status == RunStatus::completed);
  CHECK(s.completed == 400);
  CHECK(paused > 0);
  // As with a file: the bound, plus what one read chunk can hold, plus the rest of an open batch.
  CHECK(most <= opts.max_in_flight_records + 256 / 40 + 4);
}

TEST_CASE("a sink that miscounts what it holds fails the run") {
  TempDir dir;
  auto opts = base_options(dir);
  write_file(opts.input, make_input(10));
  Store store;
  auto sink = std::make_unique<DelayedSink>(store, false);
  sink->extra_ = 1;
  Pipeline pipeline(opts, tiny().model, tiny().tokenizer);
  pipeline.set_sink(std::move(sink));
  RunSummary s = pipeline.run();
  CHECK(s.status == RunStatus::failed);
  CHECK(s.error.find("holds 11 records of this run, and the run embedded 10") != std::string::npos);
}

TEST_CASE("a sink that keeps the checkpoint: stop, resume, and the records are those of one run") {
  TempDir dir;
  auto opts = base_options(dir);
  write_file(opts.input, make_input(300));
  opts.max_in_flight_records = 16;
  opts.read_chunk_bytes = 512;
  Store store;
  {
    Pipeline pipeline(opts, tiny().model, tiny().tokenizer);
    pipeline.set_sink(std::make_unique<DelayedSink>(store, true));
    pipeline.subscribe(EventFilter::of<DocumentCompleted>(), [&](const PipelineEvent& e) {
      if (std::get<DocumentCompleted>(e.payload).index == 41) pipeline.stop();
    });
    RunSummary s = pipeline.run();
    CHECK(s.status == RunStatus::stopped);
    CHECK(s.completed < 300);
  }
  {
    std::lock_guard lock(store.mutex);
    REQUIRE_FALSE(store.checkpoint.empty());
    CHECK(store.checkpoint.find("\"finished\":false") != std::string::npos);
  }
  // A checkpoint file beside a sink that keeps its own is refused.
  {
    auto with_file = opts;
    with_file.checkpoint = (dir.path / "cp.json").string();
    Pipeline pipeline(with_file, tiny().model, tiny().tokenizer);
    pipeline.set_sink(std::make_unique<DelayedSink>(store, true));
    CHECK_THROWS_AS(pipeline.run(), Error);
  }
  opts.resume = true;
  Pipeline resumed(opts, tiny().model, tiny().tokenizer);
  resumed.set_sink(std::make_unique<DelayedSink>(store, true));
  RunSummary r = resumed.run();
  CHECK(r.status == RunStatus::completed);
  CHECK(r.completed == 300);
  REQUIRE(r.verified.has_value());
  CHECK(*r.verified == 300);
  std::lock_guard lock(store.mutex);
  CHECK(store.durable.size() == 300);
  const auto lines = split_lines(make_input(300));
  for (std::uint64_t i = 0; i < 300; ++i) CHECK(store.durable[i] == lines[i]);
  CHECK(store.checkpoint.find("\"finished\":true") != std::string::npos);
}

namespace {

// A sink that can go back, like a file: its position is how many records it holds, and a
// resume cuts it back to the position the checkpoint file recorded.
class ListSink : public Sink {
 public:
  explicit ListSink(std::vector<std::string>& lines) : lines_(lines) {}
  void open(const SinkRun& run) override {
    if (run.resume) {
      REQUIRE_FALSE(run.position.empty());
      lines_.resize(std::stoul(run.position));
    } else {
      lines_.clear();
    }
  }
  void write(std::span<const EmbeddedRecord> records) override {
    for (const auto& r : records) lines_.push_back(r.json + fmt::format(" {}", r.embedding[0]));
  }
  std::string position() const override { return std::to_string(lines_.size()); }

 private:
  std::vector<std::string>& lines_;
};

}  // namespace

TEST_CASE("a sink with positions resumes from the checkpoint file: the lines of one run, none twice") {
  TempDir dir;
  auto opts = base_options(dir);
  write_file(opts.input, make_input(200));
  opts.max_in_flight_records = 16;
  opts.read_chunk_bytes = 512;
  opts.checkpoint = (dir.path / "cp.json").string();
  opts.checkpoint_every_records = 1;
  std::vector<std::string> reference, lines;
  {
    auto ref_opts = opts;
    ref_opts.checkpoint.clear();
    Pipeline ref(ref_opts, tiny().model, tiny().tokenizer);
    ref.set_sink(std::make_unique<ListSink>(reference));
    REQUIRE(ref.run().status == RunStatus::completed);
  }
  {
    Pipeline pipeline(opts, tiny().model, tiny().tokenizer);
    pipeline.set_sink(std::make_unique<ListSink>(lines));
    pipeline.subscribe(EventFilter::of<DocumentCompleted>(), [&](const PipelineEvent& e) {
      if (std::get<DocumentCompleted>(e.payload).index == 37) pipeline.stop();
    });
    CHECK(pipeline.run().status == RunStatus::stopped);
  }
  CHECK(lines.size() < 200);
  opts.resume = true;
  Pipeline resumed(opts, tiny().model, tiny().tokenizer);
  resumed.set_sink(std::make_unique<ListSink>(lines));
  CHECK(resumed.run().status == RunStatus::completed);
  CHECK(lines == reference);
}

namespace {

// A program's own source: records made in memory, each with its index as position.
class CountingSource final : public Source {
 public:
  CountingSource(int n, bool positions, int* resumed_at = nullptr)
      : n_(n), positions_(positions), resumed_at_(resumed_at) {}
  std::vector<Record> read_batch(std::size_t max_records) override {
    std::vector<Record> out;
    while (next_ < n_ && out.size() < max_records) {
      Record r;
      r.json = fmt::format("{{\"id\": {}, \"text\": \"generated record {} says {}\"}}", next_, next_,
                           std::string(static_cast<std::size_t>(next_ % 5), 'y'));
      if (next_ % 17 == 5) r.error = ErrorInfo{ErrorCode::io_error, fmt::format("item {} is unreadable", next_), {}, {}};
      ++next_;
      if (positions_) r.position = std::to_string(next_);
      out.push_back(std::move(r));
    }
    return out;
  }
  std::string name() const override { return "counting"; }
  std::optional<std::string> resume_refusal() const override {
    if (positions_) return std::nullopt;
    return Source::resume_refusal();
  }
  void resume(const std::string& position) override {
    const int at = std::stoi(position);
    if (at > n_) throw Error(ErrorCode::invalid_argument, fmt::format("position {} is past its {} items", at, n_));
    next_ = at;
    if (resumed_at_) *resumed_at_ = at;
  }

 private:
  int n_;
  bool positions_;
  int* resumed_at_;
  int next_ = 0;
};

}  // namespace

TEST_CASE("a program's source with positions resumes: the bytes of one run; bad records it names are kept aside") {
  TempDir dir;
  auto opts = base_options(dir);
  opts.max_in_flight_records = 16;
  opts.checkpoint = (dir.path / "cp.json").string();
  opts.checkpoint_every_records = 1;
  opts.dead_letter = (dir.path / "dead.jsonl").string();
  opts.on_error = OnError::skip;
  const int n = 300;
  auto ref_opts = opts;
  ref_opts.output = (dir.path / "ref.jsonl").string();
  ref_opts.dead_letter = (dir.path / "ref-dead.jsonl").string();
  ref_opts.checkpoint.clear();
  {
    Pipeline ref(ref_opts, tiny().model, tiny().tokenizer);
    ref.set_source(std::make_unique<CountingSource>(n, true));
    RunSummary s = ref.run();
    REQUIRE(s.status == RunStatus::completed);
    CHECK(s.failed == 18);  // items 5, 22, ..., 294
    CHECK(s.completed == n - 18);
  }
  const std::string ref_dead = read_file(ref_opts.dead_letter);
  CHECK(split_lines(ref_dead).size() == 18);
  CHECK(ref_dead.find("item 5 is unreadable") != std::string::npos);
  CHECK(ref_dead.find("\"counting\"") != std::string::npos);
  {
    Pipeline pipeline(opts, tiny().model, tiny().tokenizer);
    pipeline.set_source(std::make_unique<CountingSource>(n, true));
    pipeline.subscribe(EventFilter::of<DocumentCompleted>(), [&](const PipelineEvent& e) {
      if (std::get<DocumentCompleted>(e.payload).index == 101) pipeline.stop();
    });
    CHECK(pipeline.run().status == RunStatus::stopped);
  }
  simdjson::dom::parser p;
  simdjson::dom::element cp = p.parse(simdjson::padded_string(read_file(opts.checkpoint)));
  const std::uint64_t done = cp["records_done"].get_uint64();
  CHECK(done > 0);
  CHECK(std::string(std::string_view(cp["input_position"].get_string())) == std::to_string(done));
  CHECK(std::string(std::string_view(cp["input"].get_string())) == "counting");

  opts.resume = true;
  int resumed_at = -1;
  {
    Pipeline resumed(opts, tiny().model, tiny().tokenizer);
    resumed.set_source(std::make_unique<CountingSource>(n, true, &resumed_at));
    RunSummary s = resumed.run();
    CHECK(s.status == RunStatus::completed);
    CHECK(s.completed == n - 18);
    CHECK(s.failed == 18);
  }
  CHECK(resumed_at == static_cast<int>(done));
  CHECK(read_file(opts.output) == read_file(ref_opts.output));
  CHECK(read_file(opts.dead_letter) == ref_dead);

  // A position the source no longer accepts: the run refuses, with the source's reason.
  {
    std::string text = read_file(opts.checkpoint);
    const std::string key = "\"input_position\":\"";
    const auto at = text.find(key) + key.size();
    text.replace(at, text.find('"', at) - at, "100000");
    text.replace(text.find("\"finished\":true"), 15, "\"finished\":false");
    write_file(opts.checkpoint, text);
    Pipeline bad(opts, tiny().model, tiny().tokenizer);
    bad.set_source(std::make_unique<CountingSource>(n, true));
    try {
      bad.run();
      FAIL("expected a refusal");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::invalid_argument);
      CHECK(std::string(e.what()).find("position 100000 is past its 300 items") != std::string::npos);
    }
  }
  // A source without positions cannot be resumed: refused before anything is read.
  {
    Pipeline none(opts, tiny().model, tiny().tokenizer);
    none.set_source(std::make_unique<CountingSource>(n, false));
    try {
      none.run();
      FAIL("expected a refusal");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("cannot resume reading counting: it cannot go back") != std::string::npos);
    }
  }
}

TEST_CASE("make_jsonl_source() set by a program is the pipeline's own input: same bytes, same resume") {
  TempDir dir;
  auto opts = base_options(dir);
  // Blank lines over many read chunks in the middle: a batch of no records is not the end.
  write_file(opts.input, "\xEF\xBB\xBF" + make_input(15) + std::string(1000, ' ') + "\n\n" + make_input(15) +
                             "\r\n  \n{\"id\": 99, \"text\": \"no newline\"}");
  auto ref_opts = opts;
  ref_opts.output = (dir.path / "ref.jsonl").string();
  {
    Pipeline ref(ref_opts, tiny().model, tiny().tokenizer);
    REQUIRE(ref.run().status == RunStatus::completed);
  }
  opts.checkpoint = (dir.path / "cp.json").string();
  std::string first;
  {
    Pipeline own(opts, tiny().model, tiny().tokenizer);
    JsonlSourceOptions so;
    so.read_chunk_bytes = 100;  // lines across reads
    own.set_source(make_jsonl_source(opts.input, so));
    RunSummary s = own.run();
    CHECK(s.status == RunStatus::completed);
    CHECK(s.completed == 31);
    CHECK(s.bytes_read == fs::file_size(opts.input));
  }
  CHECK(read_file(opts.output) == read_file(ref_opts.output));
  // The checkpoint of the finished run: its position is after the last line, which had no
  // newline; resuming does nothing, and a line appended since is refused.
  opts.resume = true;
  {
    Pipeline again(opts, tiny().model, tiny().tokenizer);
    again.set_source(make_jsonl_source(opts.input));
    CHECK(again.run().status == RunStatus::completed);
  }
  write_file(opts.input, read_file(opts.input) + "\n{\"text\": \"more\"}\n");
  {
    Pipeline grown(opts, tiny().model, tiny().tokenizer);
    grown.set_source(make_jsonl_source(opts.input));
    CHECK_THROWS_AS(grown.run(), Error);
  }
  // Standard input is read once.
  {
    Pipeline piped(opts, tiny().model, tiny().tokenizer);
    piped.set_source(make_jsonl_source("-"));
    try {
      piped.run();
      FAIL("expected a refusal");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("cannot resume reading <stdin>: standard input is read once") !=
            std::string::npos);
    }
  }
}

namespace {

// Records of the JSONL input, every third one with its vector given (as a store would for
// content it holds) or an empty one (kept in order, no vector).
class GivenVectorSource final : public Source {
 public:
  explicit GivenVectorSource(std::vector<Record> records) : records_(std::move(records)) {}
  std::vector<Record> read_batch(std::size_t max_records) override {
    std::vector<Record> out;
    while (next_ < records_.size() && out.size() < max_records) out.push_back(records_[next_++]);
    return out;
  }

 private:
  std::vector<Record> records_;
  std::size_t next_ = 0;
};

class VectorSink final : public Sink {
 public:
  explicit VectorSink(std::vector<EmbeddedRecord>& out) : out_(out) {}
  void write(std::span<const EmbeddedRecord> records) override { out_.insert(out_.end(), records.begin(), records.end()); }

 private:
  std::vector<EmbeddedRecord>& out_;
};

}  // namespace

TEST_CASE("a record whose vector the source gives is not embedded, and keeps its place") {
  TempDir dir;
  auto opts = base_options(dir);
  opts.sort_window = 8;
  std::vector<Record> records;
  for (int i = 0; i < 40; ++i) {
    Record r;
    r.json = fmt::format("{{\"id\": {}, \"text\": \"record {} of the given-vector test\"}}", i, i);
    if (i % 3 == 1) r.embedding = std::vector<float>{static_cast<float>(i), 0.5f};
    if (i % 3 == 2 && i % 2 == 0) {
      r.json = fmt::format("{{\"id\": {}, \"file\": \"no text field\"}}", i);
      r.embedding = std::vector<float>{};
    }
    records.push_back(std::move(r));
  }
  std::vector<EmbeddedRecord> got, reference;
  {
    Pipeline p(opts, tiny().model, tiny().tokenizer);
    p.set_source(std::make_unique<GivenVectorSource>(records));
    p.set_sink(std::make_unique<VectorSink>(got));
    RunSummary s = p.run();
    CHECK(s.status == RunStatus::completed);
    CHECK(s.completed == 40);
  }
  {
    // The others alone: the same windows and batches (given vectors take no place in them),
    // so the same vectors.
    std::vector<Record> plain;
    for (const Record& r : records) {
      if (!r.embedding) plain.push_back(r);
    }
    Pipeline p(opts, tiny().model, tiny().tokenizer);
    p.set_source(std::make_unique<GivenVectorSource>(plain));
    p.set_sink(std::make_unique<VectorSink>(reference));
    REQUIRE(p.run().status == RunStatus::completed);
  }
  REQUIRE(got.size() == 40);
  REQUIRE(reference.size() == 20);
  std::size_t embedded = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("record " << i);
    CHECK(got[i].index == i);
    CHECK(got[i].json == records[i].json);
    if (records[i].embedding) {
      CHECK(got[i].embedding == *records[i].embedding);
      CHECK(got[i].tokens == 0);
    } else {
      CHECK(got[i].embedding == reference[embedded++].embedding);  // the model's, unchanged by the others
      CHECK(got[i].tokens > 0);
    }
  }
  // With the JSONL output the given vector has nowhere to go: those records fail, named.
  {
    auto o = opts;
    o.on_error = OnError::skip;
    Pipeline p(o, tiny().model, tiny().tokenizer);
    p.set_source(std::make_unique<GivenVectorSource>(records));
    RunSummary s = p.run();
    CHECK(s.failed == 13 + 7);
    CHECK(s.completed == 20);
  }
}
