#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <variant>
#include <vector>

#include <simdjson.h>

#include <sluice/events.hpp>

#include "core/json_writer.hpp"

using namespace sluice;

namespace {

constexpr std::uint64_t kMax64 = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint32_t kMax32 = std::numeric_limits<std::uint32_t>::max();

// Strings that exercise the escaping: quotes, backslashes, control characters, and non-ASCII
// text of every UTF-8 length (U+2028 and U+2029 included).
const std::string kTrickyPath = "data/in \"put\"\\é 中文 😀.jsonl";
const std::string kTrickyText = "line1\nline2\t\"quoted\" \\back\\ \x01\x1f \xE2\x80\xA8\xE2\x80\xA9 Ωμέγα 🚀";

// ---- samples: one Sample<P> per payload; a payload without one does not compile -----------

template <typename P>
struct Sample;

template <>
struct Sample<PipelineStarted> {
  static std::vector<PipelineStarted> values() {
    return {
        {},
        {kTrickyPath, "-", "models/mini-lm \"v2\" ü", kMax64, kMax32, 384, 512, kMax32, kMax32, kMax32, kMax32},
        {"-", "out.jsonl", "m", 1, 1, 1, 1, 4096, 1, 2, 1},
    };
  }
  static std::vector<std::string_view> keys(const PipelineStarted&) {
    return {"input",      "output",     "model",           "input_bytes", "batch_size",
            "dimensions", "max_tokens", "max_batch_tokens", "sort_window", "model_workers", "model_threads"};
  }
};

template <>
struct Sample<DocumentStarted> {
  static std::vector<DocumentStarted> values() {
    return {
        {},
        {kMax64, {kTrickyPath, kMax64, kMax64 - 1}},
        {41, {"in.jsonl", 42, 123456789012345}},
    };
  }
  static std::vector<std::string_view> keys(const DocumentStarted&) { return {"index", "location"}; }
};

template <>
struct Sample<DocumentCompleted> {
  static std::vector<DocumentCompleted> values() {
    return {
        {},
        {kMax64, {kTrickyPath, 18446744073709551000u, 9007199254740993u}, kMax32, true, 12.345678901234567},
        {7, {"a.jsonl", 8, 700}, 128, false, 0.1},
        {8, {"a.jsonl", 9, 800}, 3, false, 5e-324},
        {9, {"a.jsonl", 10, 900}, 3, true, 1.7976931348623157e308},
        {10, {"a.jsonl", 11, 1000}, 3, true, 3.0},
    };
  }
  static std::vector<std::string_view> keys(const DocumentCompleted&) {
    return {"index", "location", "tokens", "truncated", "duration_ms"};
  }
};

template <>
struct Sample<DocumentFailed> {
  static std::vector<DocumentFailed> values() {
    std::vector<DocumentFailed> v{{}};
    std::uint64_t i = 0;
    // One sample for every error code in the table.
#define SAMPLE_FAILURE(name, msg)                                                                     \
  v.push_back({kMax64 - i, {kTrickyPath, i + 1, i * 1000}, ErrorCode::name, kTrickyText + " (" #name ")", \
               i % 2 ? "text" : "", i % 2 == 0, static_cast<std::uint32_t>(i % 2 ? kMax32 : i + 1)});    \
  ++i;
    SLUICE_ERROR_MAP(SAMPLE_FAILURE)
#undef SAMPLE_FAILURE
    return v;
  }
  static std::vector<std::string_view> keys(const DocumentFailed&) {
    return {"index", "location", "code", "message", "field", "retryable", "attempt"};
  }
};

template <>
struct Sample<BatchProgress> {
  static std::vector<BatchProgress> values() {
    return {
        {},
        {kMax64, kMax64 - 1, 3, 1ull << 63, kMax64, 4, 1234.5678, 1.7976931348623157e308, 1e300, RunPhase::draining,
         kMax64, 1ull << 63, kMax64 - 2, kMax64, 0.999, 1e-300, 86400.5},
        {10, 0, 2, 500, 0, 40, 0.25, 33.333333333333336, std::nullopt, RunPhase::failed, 12, 600, 48, 0, 0, 0.5, 1},
        {10, 0, 2, 500, 1000, 40, 0.25, 33.333333333333336, 0.0, RunPhase::finished, 10, 1000, 40, 40, 1.0, 250, 2.25},
    };
  }
  static std::vector<std::string_view> keys(const BatchProgress& p) {
    std::vector<std::string_view> k = {"completed", "failed", "in_flight", "bytes_read", "bytes_total",
                                       "tokens", "docs_per_s", "tokens_per_s"};
    if (p.eta_s) k.push_back("eta_s");  // absent: left out
    for (std::string_view added : {"phase", "processed", "bytes_processed", "tokens_processed", "tokens_expected",
                                   "fraction", "bytes_per_s", "elapsed_s"}) {
      k.push_back(added);
    }
    return k;
  }
};

template <>
struct Sample<StageStateChanged> {
  static std::vector<StageStateChanged> values() {
    return {
        {},
        {Stage::reader, StageState::running, StageState::paused, "queue full"},
        {Stage::pipeline, StageState::draining, StageState::failed, kTrickyText},
    };
  }
  static std::vector<std::string_view> keys(const StageStateChanged&) {
    return {"stage", "from", "to", "reason"};
  }
};

template <>
struct Sample<Checkpointed> {
  static std::vector<Checkpointed> values() {
    return {
        {},
        {kTrickyPath + ".ckpt", kMax64, kMax64 - 1, kMax64 - 2, kMax64 - 3},
        {"out.jsonl.ckpt", 1000, 123456, 1001, 654321},
    };
  }
  static std::vector<std::string_view> keys(const Checkpointed&) {
    return {"path", "records_done", "input_offset", "input_line", "output_offset"};
  }
};

template <>
struct Sample<PipelineFinished> {
  static std::vector<PipelineFinished> values() {
    return {
        {},
        {{RunStatus::failed, kMax64, kMax64 - 1, 2, 3, 4, 5, 6, 98.765432109876, kTrickyText, kMax64, 7, 8, 0.75}},
        {{RunStatus::stopped, 10, 8, 1, 900, 0, 4096, 8192, 0.5, "", 2, 900, 1024, 0.25}},
    };
  }
  static std::vector<std::string_view> keys(const PipelineFinished&) { return {"summary"}; }
};

template <>
struct Sample<FileStarted> {
  static std::vector<FileStarted> values() {
    return {{}, {kTrickyPath, kMax64}, {"src/main.py", 1234}};
  }
  static std::vector<std::string_view> keys(const FileStarted&) { return {"path", "size"}; }
};

template <>
struct Sample<FileIndexed> {
  static std::vector<FileIndexed> values() {
    return {{}, {kTrickyPath, kTrickyText, 4294967295u, 4294967294u, kTrickyText},
            {"src/main.py", "partial", 12, 3, "syntax error at line 5"}};
  }
  static std::vector<std::string_view> keys(const FileIndexed&) {
    return {"path", "status", "chunks", "chunks_embedded", "reason"};
  }
};

template <>
struct Sample<FileSkipped> {
  static std::vector<FileSkipped> values() { return {{}, {kTrickyPath, kTrickyText}, {"a.png", "binary"}}; }
  static std::vector<std::string_view> keys(const FileSkipped&) { return {"path", "reason"}; }
};

template <>
struct Sample<FileFailed> {
  static std::vector<FileFailed> values() {
    return {{}, {kTrickyPath, kTrickyText}, {"a.c", "cannot read: Permission denied"}};
  }
  static std::vector<std::string_view> keys(const FileFailed&) { return {"path", "error"}; }
};

template <>
struct Sample<WorkerJoined> {
  static std::vector<WorkerJoined> values() {
    return {{}, {kTrickyText, kTrickyText, 4294967295u, 4294967294u}, {"gpu-3-1234", "gpu-3", 2, 2}};
  }
  static std::vector<std::string_view> keys(const WorkerJoined&) { return {"worker", "host", "calls", "threads"}; }
};

template <>
struct Sample<WorkerLeft> {
  static std::vector<WorkerLeft> values() { return {{}, {kTrickyText, kTrickyText}, {"w1", "silent for 5 s"}}; }
  static std::vector<std::string_view> keys(const WorkerLeft&) { return {"worker", "reason"}; }
};

template <>
struct Sample<WorkerRefused> {
  static std::vector<WorkerRefused> values() {
    return {{}, {kTrickyText, kTrickyText, kTrickyText, kTrickyText}, {"w1", "h", "bert (ab12)", "bert (cd34)"}};
  }
  static std::vector<std::string_view> keys(const WorkerRefused&) {
    return {"worker", "host", "worker_model", "run_model"};
  }
};

template <>
struct Sample<BatchRedelivered> {
  static std::vector<BatchRedelivered> values() {
    return {{}, {kMax64, 4294967295u, kTrickyText, true}, {17, 2, "w2", false}};
  }
  static std::vector<std::string_view> keys(const BatchRedelivered&) {
    return {"batch", "deliveries", "worker", "abandoned"};
  }
};

template <>
struct Sample<WorkerRate> {
  static std::vector<WorkerRate> values() {
    return {{}, {kTrickyText, kMax64, kMax64, 1e300, 0.125, 1.0}, {"w1", 10, 320, 64.5, 2048.25, 0.5}};
  }
  static std::vector<std::string_view> keys(const WorkerRate&) {
    return {"worker", "batches", "rows", "rows_per_s", "tokens_per_s", "busy"};
  }
};

template <>
struct Sample<RemoteRetry> {
  static std::vector<RemoteRetry> values() {
    return {{}, {4294967295u, 4294967295u, kTrickyText, 1e300}, {2, 429, "rate limited: Retry-After 1", 1.5}};
  }
  static std::vector<std::string_view> keys(const RemoteRetry&) { return {"attempt", "status", "reason", "wait_s"}; }
};

template <>
struct Sample<RemoteUsage> {
  static std::vector<RemoteUsage> values() {
    return {{}, {kMax64, kMax64, kMax64, kMax64, 1e300}, {12, 2, 400, 5120, 3.25}};
  }
  static std::vector<std::string_view> keys(const RemoteUsage&) {
    return {"requests", "retries", "inputs", "tokens_billed", "throttled_s"};
  }
};

// Envelopes to combine with the payloads. Timestamps are whole microseconds, which is what
// "ts" keeps.
std::vector<PipelineEvent> envelopes() {
  return {
      {1, 1717171717.123456, "run-1", {}},
      {kMax64, 0.0, kTrickyText, {}},
      {42, 4102444799.999999, "", {}},
      {2, 1.000001, "p", {}},
  };
}

template <typename V>
struct AsTuple;
template <typename... T>
struct AsTuple<std::variant<T...>> {
  using type = std::tuple<T...>;
};

std::vector<std::string> top_level_keys(simdjson::dom::parser& parser, const std::string& json) {
  simdjson::dom::object obj;
  REQUIRE(parser.parse(json).get_object().get(obj) == simdjson::SUCCESS);
  std::vector<std::string> keys;
  for (auto field : obj) keys.emplace_back(field.key);
  return keys;
}

// Rewrites the JSON object `json`, leaving out the member at `path` ("location.line") or, when
// `replacement` is given, putting that JSON text in its place.
std::string rewrite(const std::string& json, std::string_view path,
                    std::optional<std::string_view> replacement) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  REQUIRE(parser.parse(json).get(root) == simdjson::SUCCESS);
  std::string out;
  json::JsonWriter w(out);
  auto copy = [&](auto&& self, simdjson::dom::object obj, std::string_view prefix) -> void {
    w.begin_object();
    for (auto field : obj) {
      const std::string here = prefix.empty() ? std::string(field.key)
                                              : std::string(prefix) + "." + std::string(field.key);
      if (here == path) {
        if (replacement) w.key(field.key).raw_value(*replacement);
        continue;
      }
      simdjson::dom::object inner;
      if (field.value.get_object().get(inner) == simdjson::SUCCESS) {
        w.key(field.key);
        self(self, inner, here);
      } else {
        w.key(field.key).raw_value(simdjson::minify(field.value));
      }
    }
    w.end_object();
  };
  copy(copy, root.get_object().value(), "");
  return out;
}

// Every member path of the object `json`, nested ones as "location.line".
std::vector<std::string> member_paths(const std::string& json) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  REQUIRE(parser.parse(json).get(root) == simdjson::SUCCESS);
  std::vector<std::string> paths;
  auto walk = [&](auto&& self, simdjson::dom::object obj, const std::string& prefix) -> void {
    for (auto field : obj) {
      const std::string here = prefix.empty() ? std::string(field.key) : prefix + "." + std::string(field.key);
      paths.push_back(here);
      simdjson::dom::object inner;
      if (field.value.get_object().get(inner) == simdjson::SUCCESS) self(self, inner, here);
    }
  };
  walk(walk, root.get_object().value(), "");
  return paths;
}

PipelineEvent sample_event(EventPayload payload) {
  PipelineEvent e = envelopes().front();
  e.payload = std::move(payload);
  return e;
}

}  // namespace

// ---- round trips, one test case per payload type -------------------------------------------

TEST_CASE_TEMPLATE_DEFINE("every payload round-trips through JSON", P, round_trip) {
  const std::vector<P> values = Sample<P>::values();
  REQUIRE(values.size() >= 2);
  CHECK(values.front() == P{});  // the defaults (zeros, empty strings) are covered too
  simdjson::dom::parser parser;
  std::string reused = "previous line\n";
  for (const PipelineEvent& envelope : envelopes()) {
    for (const P& value : values) {
      PipelineEvent event = envelope;
      event.payload = value;
      CHECK(event_type(event.payload) == P::kType);

      const std::string json = to_json(event);
      INFO("json: ", json);
      CHECK(json.find('\n') == std::string::npos);
      CHECK(simdjson::validate_utf8(json.data(), json.size()));

      // append_json appends the same text to whatever is already in the buffer.
      const std::size_t before = reused.size();
      append_json(reused, event);
      CHECK(std::string_view(reused).substr(before) == json);

      // The keys, in order: the envelope, then the payload's fields in declaration order.
      std::vector<std::string> expected = {"type", "v", "seq", "ts", "pipeline"};
      for (std::string_view k : Sample<P>::keys(value)) expected.emplace_back(k);
      CHECK(top_level_keys(parser, json) == expected);

      simdjson::dom::element root;
      REQUIRE(parser.parse(json).get(root) == simdjson::SUCCESS);
      CHECK(root["type"].get_string().value() == P::kType);
      CHECK(root["v"].get_int64().value() == kEventSchemaVersion);
      CHECK(root["seq"].get_uint64().value() == event.seq);
      CHECK(root["pipeline"].get_string().value() == event.pipeline_id);

      const Result<PipelineEvent> back = event_from_json(json);
      REQUIRE_MESSAGE(back.ok(), back.error().message);
      CHECK(back.value() == event);
      REQUIRE(std::holds_alternative<P>(back.value().payload));
    }
  }
}
TEST_CASE_TEMPLATE_APPLY(round_trip, AsTuple<EventPayload>::type);

TEST_CASE("the JSON form follows docs/events.md") {
  // Written by hand from the specification: envelope first, "ts" with six decimals, the
  // location nested, doubles in their shortest form.
  PipelineEvent e{17, 1717171717.5, "run-7",
          DocumentCompleted{3, {"in.jsonl", 4, 120}, 12, true, 2.5}};
  CHECK(to_json(e) ==
        R"({"type":"document_completed","v":1,"seq":17,"ts":1717171717.500000,"pipeline":"run-7",)"
        R"("index":3,"location":{"file":"in.jsonl","line":4,"offset":120},"tokens":12,)"
        R"("truncated":true,"duration_ms":2.5})");

  DocumentFailed failed;  // (aggregate initialisation here trips a GCC 12 -Wmaybe-uninitialized)
  failed.index = 5;
  failed.location = {"in.jsonl", 6, 300};
  failed.code = ErrorCode::missing_field;
  failed.message = "in.jsonl:6: field \"text\" is missing";
  failed.field = "text";
  failed.retryable = false;
  failed.attempt = 1;
  e.payload = failed;
  CHECK(to_json(e) ==
        R"({"type":"document_failed","v":1,"seq":17,"ts":1717171717.500000,"pipeline":"run-7",)"
        R"("index":5,"location":{"file":"in.jsonl","line":6,"offset":300},"code":"missing_field",)"
        R"("message":"in.jsonl:6: field \"text\" is missing","field":"text","retryable":false,"attempt":1})");

  e.payload = BatchProgress{1, 2, 3, 4, 0, 6, 0.5, 100, std::nullopt, RunPhase::draining, 7, 8, 9, 10, 0.75, 11.5, 12};
  CHECK(to_json(e) ==
        R"({"type":"batch_progress","v":1,"seq":17,"ts":1717171717.500000,"pipeline":"run-7",)"
        R"("completed":1,"failed":2,"in_flight":3,"bytes_read":4,"bytes_total":0,"tokens":6,)"
        R"("docs_per_s":0.5,"tokens_per_s":100,"phase":"draining","processed":7,"bytes_processed":8,)"
        R"("tokens_processed":9,"tokens_expected":10,"fraction":0.75,"bytes_per_s":11.5,"elapsed_s":12})");

  e.payload = PipelineFinished{{RunStatus::completed, 1, 1, 0, 9, 0, 10, 20, 0.25, "", 1, 9, 16, 0.125, 2}};
  CHECK(to_json(e) ==
        R"({"type":"pipeline_finished","v":1,"seq":17,"ts":1717171717.500000,"pipeline":"run-7",)"
        R"("summary":{"status":"completed","records_read":1,"completed":1,"failed":0,"tokens":9,)"
        R"("truncated":0,"bytes_read":10,"bytes_written":20,"elapsed_s":0.25,"error":"","model_calls":1,)"
        R"("model_tokens":9,"padded_tokens":16,"model_busy_s":0.125,"model_workers":2}})");
}

TEST_CASE("event_type names every alternative by its kType") {
  EventPayload p = PipelineStarted{};
  CHECK(event_type(p) == "pipeline_started");
  p = DocumentStarted{};
  CHECK(event_type(p) == "document_started");
  p = DocumentCompleted{};
  CHECK(event_type(p) == "document_completed");
  p = DocumentFailed{};
  CHECK(event_type(p) == "document_failed");
  p = BatchProgress{};
  CHECK(event_type(p) == "batch_progress");
  p = StageStateChanged{};
  CHECK(event_type(p) == "stage_state_changed");
  p = Checkpointed{};
  CHECK(event_type(p) == "checkpointed");
  p = PipelineFinished{};
  CHECK(event_type(p) == "pipeline_finished");
  p = FileStarted{};
  CHECK(event_type(p) == "file_started");
  p = FileIndexed{};
  CHECK(event_type(p) == "file_indexed");
  p = FileSkipped{};
  CHECK(event_type(p) == "file_skipped");
  p = FileFailed{};
  CHECK(event_type(p) == "file_failed");
  p = WorkerJoined{};
  CHECK(event_type(p) == "worker_joined");
  p = WorkerLeft{};
  CHECK(event_type(p) == "worker_left");
  p = WorkerRefused{};
  CHECK(event_type(p) == "worker_refused");
  p = BatchRedelivered{};
  CHECK(event_type(p) == "batch_redelivered");
  p = WorkerRate{};
  CHECK(event_type(p) == "worker_rate");
  p = RemoteRetry{};
  CHECK(event_type(p) == "remote_retry");
  p = RemoteUsage{};
  CHECK(event_type(p) == "remote_usage");
  CHECK(kEventKinds == 19);  // a new kind also needs a line above and a section in docs/events.md
}

TEST_CASE("timestamps keep microseconds") {
  PipelineEvent e = sample_event(Checkpointed{});
  e.timestamp = 1717171717.1234567;  // finer than a microsecond: rounded
  const std::string json = to_json(e);
  CHECK(json.find(R"("ts":1717171717.123457,)") != std::string::npos);
  const Result<PipelineEvent> back = event_from_json(json);
  REQUIRE(back.ok());
  CHECK(std::abs(back.value().timestamp - 1717171717.1234567) < 1e-6);
}

TEST_CASE("NaN and infinities are written as null and read back as NaN or absent") {
  PipelineEvent e = sample_event(DocumentCompleted{1, {"f", 2, 3}, 4, false, std::nan("")});
  std::string json = to_json(e);
  CHECK(json.find(R"("duration_ms":null)") != std::string::npos);
  Result<PipelineEvent> back = event_from_json(json);
  REQUIRE_MESSAGE(back.ok(), back.error().message);
  CHECK(std::isnan(std::get<DocumentCompleted>(back.value().payload).duration_ms));

  e.payload = BatchProgress{1, 0, 0, 0, 0, 0, std::numeric_limits<double>::infinity(), 0,
                            -std::numeric_limits<double>::infinity()};
  json = to_json(e);
  CHECK(json.find(R"("docs_per_s":null)") != std::string::npos);
  CHECK(json.find(R"("eta_s":null)") != std::string::npos);
  back = event_from_json(json);
  REQUIRE_MESSAGE(back.ok(), back.error().message);
  const auto& progress = std::get<BatchProgress>(back.value().payload);
  CHECK(std::isnan(progress.docs_per_s));
  CHECK_FALSE(progress.eta_s.has_value());
}

// ---- what the parser accepts ----------------------------------------------------------------

TEST_CASE("an absent optional field may also be written as null") {
  const PipelineEvent e = sample_event(BatchProgress{1, 2, 3, 4, 5, 6, 7.5, 8.5, std::nullopt});
  const std::string json = to_json(e);
  CHECK(json.find("eta_s") == std::string::npos);
  std::string with_null = json;
  with_null.insert(with_null.size() - 1, R"(,"eta_s":null)");
  const Result<PipelineEvent> back = event_from_json(with_null);
  REQUIRE_MESSAGE(back.ok(), back.error().message);
  CHECK(back.value() == e);
}

TEST_CASE("unknown fields, whitespace, member order and integer-valued numbers are accepted") {
  const PipelineEvent e = sample_event(PipelineFinished{{RunStatus::completed, 5, 4, 1, 100, 0, 300, 400, 2.0, "", 3, 100, 128, 1.5, 2}});
  const std::string text = R"(
    {
      "extra_top": {"nested": [1, 2, {"x": null}]},
      "summary": {"error": "", "elapsed_s": 2, "bytes_written": 400, "bytes_read": 300,
                  "truncated": 0, "tokens": 100, "failed": 1, "completed": 4, "records_read": 5,
                  "status": "completed", "future_counter": 12, "model_calls": 3, "model_tokens": 100,
                  "padded_tokens": 128, "model_busy_s": 1.5, "model_workers": 2},
      "pipeline": "run-1", "ts": 1717171717.123456, "seq": 1, "v": 1,
      "type": "pipeline_finished"
    }
  )";
  const Result<PipelineEvent> back = event_from_json(text);
  REQUIRE_MESSAGE(back.ok(), back.error().message);
  CHECK(back.value() == e);

  // A line as read from a JSONL file, newline included.
  const Result<PipelineEvent> line = event_from_json(to_json(e) + "\n");
  REQUIRE(line.ok());
  CHECK(line.value() == e);

  // Unknown members inside "location" too.
  const PipelineEvent d = sample_event(DocumentStarted{3, {"f.jsonl", 4, 5}});
  const std::string nested = rewrite(to_json(d), "location.line", R"(4,"column":9)");
  const Result<PipelineEvent> nested_back = event_from_json(nested);
  REQUIRE_MESSAGE(nested_back.ok(), nested_back.error().message);
  CHECK(nested_back.value() == d);
}

// ---- what the parser rejects ----------------------------------------------------------------

namespace {

struct Rejection {
  ErrorCode code;
  std::string field;
  std::string message;
};

Rejection rejection(const std::string& json) {
  const Result<PipelineEvent> r = event_from_json(json);
  INFO("json: ", json);
  REQUIRE_FALSE(r.ok());
  return {r.error().code, r.error().field, r.error().message};
}

// One JSON text per payload kind, with every field present.
std::vector<std::string> one_of_each() {
  std::vector<std::string> out;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (out.push_back(to_json(sample_event(Sample<std::variant_alternative_t<I, EventPayload>>::values()[1]))),
     ...);
  }(std::make_index_sequence<kEventKinds>{});
  return out;
}

bool is_added_progress_field(const std::string& json, const std::string& path) {
  if (json.find("\"type\":\"batch_progress\"") == std::string::npos) return false;
  for (std::string_view added : {"phase", "processed", "bytes_processed", "tokens_processed", "tokens_expected",
                                 "fraction", "bytes_per_s", "elapsed_s"}) {
    if (path == added) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("a batch_progress line of the first release reads, with the added fields at their defaults") {
  const Result<PipelineEvent> r = event_from_json(
      R"({"type":"batch_progress","v":1,"seq":10,"ts":1717171719.166077,"pipeline":"p","completed":6144,)"
      R"("failed":3,"in_flight":96,"bytes_read":4194304,"bytes_total":52428800,"tokens":1523712,)"
      R"("docs_per_s":3050.7,"tokens_per_s":756581.4,"eta_s":79.1})");
  REQUIRE(r.ok());
  const auto& p = std::get<BatchProgress>(r.value().payload);
  CHECK(p.completed == 6144);
  CHECK(p.eta_s == 79.1);
  CHECK(p.phase == RunPhase::embedding);  // absent: the default
  CHECK(p.processed == 0);
  CHECK(p.fraction == 0);
  // A field of the first release is still required.
  CHECK(rejection(R"({"type":"batch_progress","v":1,"seq":10,"ts":1.0,"pipeline":"p","completed":1,"failed":0,)"
                  R"("in_flight":0,"bytes_read":0,"bytes_total":0,"docs_per_s":0,"tokens_per_s":0})")
            .field == "tokens");
}

TEST_CASE("each missing field is named") {
  std::size_t checked = 0;
  for (const std::string& json : one_of_each()) {
    for (const std::string& path : member_paths(json)) {
      const std::string without = rewrite(json, path, std::nullopt);
      INFO("without ", path, ": ", without);
      if (path == "eta_s") {  // optional
        CHECK(event_from_json(without).ok());
        continue;
      }
      if (is_added_progress_field(json, path)) {  // added after the first release: the default
        const Result<PipelineEvent> r = event_from_json(without);
        REQUIRE(r.ok());
        CHECK(std::get<BatchProgress>(r.value().payload) != std::get<BatchProgress>(event_from_json(json).value().payload));
        continue;
      }
      const Rejection r = rejection(without);
      CHECK(r.code == ErrorCode::missing_field);
      CHECK(r.field == path);
      CHECK(r.message == "event_from_json: field \"" + path + "\" is missing");
      ++checked;
    }
  }
  CHECK(checked > 50);
}

TEST_CASE("each mistyped field is named") {
  for (const std::string& json : one_of_each()) {
    for (const std::string& path : member_paths(json)) {
      // An array is the wrong type for every field; the others are wrong for most.
      for (std::string_view wrong : {"[]", "{}", "\"1\"", "true"}) {
        const std::string mistyped = rewrite(json, path, wrong);
        INFO(path, " = ", wrong, ": ", mistyped);
        const Result<PipelineEvent> r = event_from_json(mistyped);
        // "{}" is a valid (empty) object for nested objects, "true" a valid bool, a string a
        // valid string: those must fail on the first member missing inside, or not at all.
        if (r.ok()) {
          const bool wrong_is_right = (wrong == "\"1\"" && (path == "pipeline" || path == "input" ||
                                                            path == "output" || path == "model" ||
                                                            path == "message" || path == "field" ||
                                                            path == "stage" || path == "from" ||
                                                            path == "to" || path == "reason" ||
                                                            path == "path" || path == "location.file" ||
                                                            path == "summary.status" || path == "summary.error" ||
                                                            path == "phase" || path == "status" ||
                                                            path == "error" || path == "worker" ||
                                                            path == "host" || path == "worker_model" ||
                                                            path == "run_model")) ||
                                      (wrong == "true" && (path == "truncated" || path == "retryable" ||
                                                           path == "abandoned"));
          CHECK(wrong_is_right);
          continue;
        }
        if (path == "type" && wrong == "\"1\"") {
          CHECK(r.error().message == "event_from_json: unknown event type \"1\"");
          continue;
        }
        CHECK(r.error().field.rfind(path, 0) == 0);  // the field itself, or a member inside it
        CHECK(r.error().message.rfind("event_from_json: field \"" + path, 0) == 0);
      }
    }
  }
}

TEST_CASE("mistyped values: messages") {
  DocumentFailed failed;  // (aggregate initialisation here trips a GCC 12 -Wmaybe-uninitialized)
  failed.index = 1;
  failed.location = {"f", 2, 3};
  failed.code = ErrorCode::io_error;
  failed.message = "m";
  failed.retryable = true;
  failed.attempt = 4;
  const std::string json = to_json(sample_event(failed));
  struct Case {
    std::string_view path;
    std::string_view value;
    ErrorCode code;
    std::string_view message;
  };
  const Case cases[] = {
      {"seq", "\"1\"", ErrorCode::invalid_json, R"(event_from_json: field "seq" is not an unsigned integer)"},
      {"seq", "-1", ErrorCode::invalid_json, R"(event_from_json: field "seq" is negative, expected an unsigned integer)"},
      {"seq", "1.5", ErrorCode::invalid_json, R"(event_from_json: field "seq" is not an unsigned integer)"},
      {"seq", "1e3", ErrorCode::invalid_json, R"(event_from_json: field "seq" is not an unsigned integer)"},
      {"attempt", "4294967296", ErrorCode::invalid_json, R"(event_from_json: field "attempt" is out of range (at most 4294967295))"},
      {"location.line", "null", ErrorCode::invalid_json, R"(event_from_json: field "location.line" is not an unsigned integer)"},
      {"location", "[]", ErrorCode::invalid_json, R"(event_from_json: field "location" is not an object)"},
      {"location.file", "7", ErrorCode::field_not_string, R"(event_from_json: field "location.file" is not a string)"},
      {"message", "null", ErrorCode::field_not_string, R"(event_from_json: field "message" is not a string)"},
      {"retryable", "1", ErrorCode::invalid_json, R"(event_from_json: field "retryable" is not true or false)"},
      {"code", "\"no_such_code\"", ErrorCode::invalid_json, R"(event_from_json: field "code" has an unknown error code "no_such_code")"},
      {"code", "3", ErrorCode::field_not_string, R"(event_from_json: field "code" is not a string)"},
      {"ts", "\"now\"", ErrorCode::invalid_json, R"(event_from_json: field "ts" is not a number)"},
      {"pipeline", "{}", ErrorCode::field_not_string, R"(event_from_json: field "pipeline" is not a string)"},
      {"type", "1", ErrorCode::field_not_string, R"(event_from_json: field "type" is not a string)"},
      {"type", "\"document_exploded\"", ErrorCode::invalid_argument, R"(event_from_json: unknown event type "document_exploded")"},
      {"v", "2", ErrorCode::invalid_argument, R"(event_from_json: field "v" is 2: this reader supports schema versions 1 to 1)"},
      {"v", "0", ErrorCode::invalid_argument, R"(event_from_json: field "v" is 0: this reader supports schema versions 1 to 1)"},
      {"v", "\"1\"", ErrorCode::invalid_json, R"(event_from_json: field "v" is not an integer)"},
      {"v", "1.0", ErrorCode::invalid_json, R"(event_from_json: field "v" is not an integer)"},
  };
  for (const Case& c : cases) {
    const std::string bad = rewrite(json, c.path, c.value);
    INFO(bad);
    const Rejection r = rejection(bad);
    CHECK(r.code == c.code);
    CHECK(r.field == c.path);
    CHECK(r.message == c.message);
  }
}

TEST_CASE("a newer schema version is rejected before anything else is looked at") {
  // v2 may have renamed every field: the version is what the error names.
  const Rejection r = rejection(R"({"type":"something_new","v":2,"renamed_seq":1})");
  CHECK(r.field == "v");
  CHECK(r.code == ErrorCode::invalid_argument);
}

TEST_CASE("large unsigned values: up to 2^64-1, nothing beyond") {
  const std::string json = to_json(sample_event(Checkpointed{"p", kMax64, kMax64, kMax64, kMax64}));
  CHECK(json.find("\"records_done\":18446744073709551615,") != std::string::npos);
  const Result<PipelineEvent> back = event_from_json(json);
  REQUIRE(back.ok());
  CHECK(std::get<Checkpointed>(back.value().payload).records_done == kMax64);
  // 2^64 does not fit: rejected (simdjson refuses the number itself).
  const std::string too_big = rewrite(json, "records_done", "18446744073709551616");
  CHECK_FALSE(event_from_json(too_big).ok());
}

TEST_CASE("text that is not one JSON object is rejected") {
  const std::string good = to_json(sample_event(DocumentStarted{1, {"f", 1, 0}}));
  for (const std::string& bad :
       {std::string(), std::string("   "), std::string("{"), std::string("nul"), std::string(R"({"type":)"),
        good.substr(0, good.size() - 1), good + "}", good + " x", good + good, std::string("{\"a\":1,}"),
        std::string("{'type':'checkpointed'}")}) {
    const Rejection r = rejection(bad);
    CHECK(r.code == ErrorCode::invalid_json);
    CHECK(r.message.rfind("event_from_json: the text is not valid JSON (", 0) == 0);
  }
  for (const std::string& bad : {std::string("[]"), std::string("42"), std::string("\"document_started\""),
                                 std::string("null"), "[" + good + "]"}) {
    const Rejection r = rejection(bad);
    CHECK(r.code == ErrorCode::not_an_object);
    CHECK(r.message == "event_from_json: the text is not a JSON object");
  }
  // Ill-formed UTF-8 inside a string.
  std::string bad_utf8 = good;
  bad_utf8.replace(bad_utf8.find("\"f\""), 3, "\"\xC3\x28\"");
  CHECK(rejection(bad_utf8).code == ErrorCode::invalid_utf8);
}

TEST_CASE("to_json writes ill-formed UTF-8 in strings as U+FFFD, so the line stays valid") {
  const PipelineEvent e = sample_event(StageStateChanged{Stage::reader, StageState::running, StageState::failed, "bad byte \xFF here"});
  const std::string json = to_json(e);
  CHECK(simdjson::validate_utf8(json.data(), json.size()));
  const Result<PipelineEvent> back = event_from_json(json);
  REQUIRE(back.ok());
  CHECK(std::get<StageStateChanged>(back.value().payload).reason == "bad byte \xEF\xBF\xBD here");
}

TEST_CASE("EventFilter selects kinds") {
  const EventFilter quiet = EventFilter::without_documents();
  CHECK_FALSE(quiet.wants<DocumentStarted>());
  CHECK_FALSE(quiet.wants<DocumentCompleted>());
  CHECK(quiet.wants<DocumentFailed>());
  CHECK(quiet.wants<PipelineFinished>());
  EventFilter some = EventFilter::of<BatchProgress, Checkpointed>();
  CHECK(some.wants<BatchProgress>());
  CHECK_FALSE(some.wants<PipelineStarted>());
  some.merge(EventFilter::of<PipelineStarted>());
  CHECK(some.wants<PipelineStarted>());
  CHECK(some.wants_index(EventFilter::index_of<Checkpointed>()));
  for (std::size_t i = 0; i < kEventKinds; ++i) CHECK(EventFilter::all().wants_index(i));
}
