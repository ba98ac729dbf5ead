// JSON form of pipeline events (docs/events.md): to_json / append_json write one object,
// event_from_json reads it back with simdjson's DOM parser.
//
// Each struct lists its fields once, in for_each_field(); writing and reading both go through
// that list, so the two cannot disagree, and a static_assert below checks that the list has as
// many entries as the struct has members: a field added to a payload without being added here
// fails to compile.

#include <chrono>
#include <sluice/events.hpp>

#include <array>
#include <cmath>
#include <concepts>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <fmt/format.h>
#include <simdjson.h>

#include "core/json_writer.hpp"

namespace sluice {

namespace {

template <typename T, typename U>
concept Is = std::same_as<std::remove_const_t<T>, U>;

// ---- the field lists: f(name, member) in declaration order ----------------------------------

template <typename T, typename F>
  requires Is<T, InputLocation>
constexpr void for_each_field(T& v, F&& f) {
  f("file", v.file);
  f("line", v.line);
  f("offset", v.offset);
}

template <typename T, typename F>
  requires Is<T, RunSummary>
constexpr void for_each_field(T& v, F&& f) {
  f("status", v.status);
  f("records_read", v.records_read);
  f("completed", v.completed);
  f("failed", v.failed);
  f("tokens", v.tokens);
  f("truncated", v.truncated);
  f("bytes_read", v.bytes_read);
  f("bytes_written", v.bytes_written);
  f("elapsed_s", v.elapsed_s);
  f("error", v.error);
  f("model_calls", v.model_calls);
  f("model_tokens", v.model_tokens);
  f("padded_tokens", v.padded_tokens);
  f("model_busy_s", v.model_busy_s);
  f("model_workers", v.model_workers);
  f("verified", v.verified);
}

template <typename T, typename F>
  requires Is<T, PipelineStarted>
constexpr void for_each_field(T& v, F&& f) {
  f("input", v.input);
  f("output", v.output);
  f("model", v.model);
  f("input_bytes", v.input_bytes);
  f("batch_size", v.batch_size);
  f("dimensions", v.dimensions);
  f("max_tokens", v.max_tokens);
  f("max_batch_tokens", v.max_batch_tokens);
  f("sort_window", v.sort_window);
  f("model_workers", v.model_workers);
  f("model_threads", v.model_threads);
}

template <typename T, typename F>
  requires Is<T, DocumentStarted>
constexpr void for_each_field(T& v, F&& f) {
  f("index", v.index);
  f("location", v.location);
}

template <typename T, typename F>
  requires Is<T, DocumentCompleted>
constexpr void for_each_field(T& v, F&& f) {
  f("index", v.index);
  f("location", v.location);
  f("tokens", v.tokens);
  f("truncated", v.truncated);
  f("duration_ms", v.duration_ms);
}

template <typename T, typename F>
  requires Is<T, DocumentFailed>
constexpr void for_each_field(T& v, F&& f) {
  f("index", v.index);
  f("location", v.location);
  f("code", v.code);
  f("message", v.message);
  f("field", v.field);
  f("retryable", v.retryable);
  f("attempt", v.attempt);
}

template <typename T, typename F>
  requires Is<T, BatchProgress>
constexpr void for_each_field(T& v, F&& f) {
  f("completed", v.completed);
  f("failed", v.failed);
  f("in_flight", v.in_flight);
  f("bytes_read", v.bytes_read);
  f("bytes_total", v.bytes_total);
  f("tokens", v.tokens);
  f("docs_per_s", v.docs_per_s);
  f("tokens_per_s", v.tokens_per_s);
  f("eta_s", v.eta_s);
  f("phase", v.phase);
  f("processed", v.processed);
  f("bytes_processed", v.bytes_processed);
  f("tokens_processed", v.tokens_processed);
  f("tokens_expected", v.tokens_expected);
  f("fraction", v.fraction);
  f("bytes_per_s", v.bytes_per_s);
  f("elapsed_s", v.elapsed_s);
}

template <typename T, typename F>
  requires Is<T, StageStateChanged>
constexpr void for_each_field(T& v, F&& f) {
  f("stage", v.stage);
  f("from", v.from);
  f("to", v.to);
  f("reason", v.reason);
}

template <typename T, typename F>
  requires Is<T, Checkpointed>
constexpr void for_each_field(T& v, F&& f) {
  f("path", v.path);
  f("records_done", v.records_done);
  f("input_offset", v.input_offset);
  f("input_line", v.input_line);
  f("output_offset", v.output_offset);
}

template <typename T, typename F>
  requires Is<T, PipelineFinished>
constexpr void for_each_field(T& v, F&& f) {
  f("summary", v.summary);
}

template <typename T, typename F>
  requires Is<T, FileStarted>
constexpr void for_each_field(T& v, F&& f) {
  f("path", v.path);
  f("size", v.size);
}

template <typename T, typename F>
  requires Is<T, FileIndexed>
constexpr void for_each_field(T& v, F&& f) {
  f("path", v.path);
  f("status", v.status);
  f("chunks", v.chunks);
  f("chunks_embedded", v.chunks_embedded);
  f("reason", v.reason);
}

template <typename T, typename F>
  requires Is<T, FileSkipped>
constexpr void for_each_field(T& v, F&& f) {
  f("path", v.path);
  f("reason", v.reason);
}

template <typename T, typename F>
  requires Is<T, FileFailed>
constexpr void for_each_field(T& v, F&& f) {
  f("path", v.path);
  f("error", v.error);
}

template <typename T, typename F>
  requires Is<T, WorkerJoined>
constexpr void for_each_field(T& v, F&& f) {
  f("worker", v.worker);
  f("host", v.host);
  f("calls", v.calls);
  f("threads", v.threads);
}

template <typename T, typename F>
  requires Is<T, WorkerLeft>
constexpr void for_each_field(T& v, F&& f) {
  f("worker", v.worker);
  f("reason", v.reason);
}

template <typename T, typename F>
  requires Is<T, WorkerRefused>
constexpr void for_each_field(T& v, F&& f) {
  f("worker", v.worker);
  f("host", v.host);
  f("worker_model", v.worker_model);
  f("run_model", v.run_model);
}

template <typename T, typename F>
  requires Is<T, BatchRedelivered>
constexpr void for_each_field(T& v, F&& f) {
  f("batch", v.batch);
  f("deliveries", v.deliveries);
  f("worker", v.worker);
  f("abandoned", v.abandoned);
}

template <typename T, typename F>
  requires Is<T, WorkerRate>
constexpr void for_each_field(T& v, F&& f) {
  f("worker", v.worker);
  f("batches", v.batches);
  f("rows", v.rows);
  f("rows_per_s", v.rows_per_s);
  f("tokens_per_s", v.tokens_per_s);
  f("busy", v.busy);
}

template <typename T, typename F>
  requires Is<T, RemoteRetry>
constexpr void for_each_field(T& v, F&& f) {
  f("attempt", v.attempt);
  f("status", v.status);
  f("reason", v.reason);
  f("wait_s", v.wait_s);
}

template <typename T, typename F>
  requires Is<T, RemoteUsage>
constexpr void for_each_field(T& v, F&& f) {
  f("requests", v.requests);
  f("retries", v.retries);
  f("inputs", v.inputs);
  f("tokens_billed", v.tokens_billed);
  f("throttled_s", v.throttled_s);
}

// ---- compile-time checks --------------------------------------------------------------------

template <typename T>
struct IsOptional : std::false_type {};
template <typename T>
struct IsOptional<std::optional<T>> : std::true_type {};

// Converts to any member type, to count an aggregate's members by brace-initialising it with
// more and more of these (the technique of Boost.PFR). Never called, only used unevaluated.
struct AnyMember {
  template <typename T>
    requires(!IsOptional<T>::value)
  operator T&() const noexcept;
};

template <typename T, std::size_t... I>
constexpr bool brace_initialisable_with(std::index_sequence<I...>) {
  return requires { T{((void)I, AnyMember{})...}; };
}

template <typename T, std::size_t N = 0>
constexpr std::size_t member_count() {
  if constexpr (N < 64 && brace_initialisable_with<T>(std::make_index_sequence<N + 1>{})) {
    return member_count<T, N + 1>();
  } else {
    return N;
  }
}

template <typename T>
constexpr std::size_t listed_field_count() {
  T value{};
  std::size_t n = 0;
  for_each_field(value, [&n](std::string_view, auto&) { ++n; });
  return n;
}

// The names are written with JsonWriter::key_unescaped().
template <typename T>
constexpr bool listed_names_plain() {
  T value{};
  bool plain = true;
  for_each_field(value, [&plain](std::string_view name, auto&) {
    plain = plain && json::needs_no_escaping(name);
  });
  return plain;
}

template <typename T>
constexpr bool all_fields_listed() {
  static_assert(listed_field_count<T>() == member_count<T>(),
                "a member of this event struct is missing from for_each_field() in event_json.cpp");
  static_assert(listed_names_plain<T>(), "a field name needs JSON escaping");
  return true;
}

template <std::size_t... I>
constexpr bool all_payload_fields_listed(std::index_sequence<I...>) {
  return (all_fields_listed<std::variant_alternative_t<I, EventPayload>>() && ...);
}

static_assert(all_fields_listed<InputLocation>());
static_assert(all_fields_listed<RunSummary>());
static_assert(all_payload_fields_listed(std::make_index_sequence<kEventKinds>{}));

template <std::size_t... I>
constexpr std::array<std::string_view, kEventKinds> type_names(std::index_sequence<I...>) {
  return {std::variant_alternative_t<I, EventPayload>::kType...};
}
constexpr std::array<std::string_view, kEventKinds> kTypeNames =
    type_names(std::make_index_sequence<kEventKinds>{});

constexpr bool type_names_unique() {
  for (std::size_t i = 0; i < kEventKinds; ++i) {
    for (std::size_t j = i + 1; j < kEventKinds; ++j) {
      if (kTypeNames[i] == kTypeNames[j]) return false;
    }
  }
  return true;
}
static_assert(type_names_unique(), "two event payloads have the same kType");

// ---- enum names -----------------------------------------------------------------------------

template <typename E, std::size_t N>
bool parse_name(const std::array<std::string_view, N>& names, std::string_view name, E& out) noexcept {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == name) {
      out = static_cast<E>(i);
      return true;
    }
  }
  return false;
}

constexpr std::array<std::string_view, 3> kRunStatusNames = {"completed", "stopped", "failed"};
constexpr std::array<std::string_view, 2> kStageNames = {"pipeline", "reader"};
constexpr std::array<std::string_view, 6> kStageStateNames = {"created",  "running", "paused",
                                                                "draining", "stopped", "failed"};
constexpr std::array<std::string_view, 6> kRunPhaseNames = {"embedding", "draining", "finishing",
                                                             "finished",  "stopped",  "failed"};

}  // namespace

std::string_view to_string(RunStatus v) noexcept { return kRunStatusNames[static_cast<std::size_t>(v)]; }
std::string_view to_string(Stage v) noexcept { return kStageNames[static_cast<std::size_t>(v)]; }
std::string_view to_string(StageState v) noexcept { return kStageStateNames[static_cast<std::size_t>(v)]; }
std::string_view to_string(RunPhase v) noexcept { return kRunPhaseNames[static_cast<std::size_t>(v)]; }
bool from_string(std::string_view n, RunStatus& out) noexcept { return parse_name(kRunStatusNames, n, out); }
bool from_string(std::string_view n, Stage& out) noexcept { return parse_name(kStageNames, n, out); }
bool from_string(std::string_view n, StageState& out) noexcept { return parse_name(kStageStateNames, n, out); }
bool from_string(std::string_view n, RunPhase& out) noexcept { return parse_name(kRunPhaseNames, n, out); }

namespace {

// ---- writing --------------------------------------------------------------------------------

void write_value(json::JsonWriter& w, const std::string& v) { w.string_value(v); }
void write_value(json::JsonWriter& w, std::uint64_t v) { w.uint_value(v); }
void write_value(json::JsonWriter& w, std::uint32_t v) { w.uint_value(v); }
void write_value(json::JsonWriter& w, bool v) { w.bool_value(v); }
void write_value(json::JsonWriter& w, double v) { w.double_value(v); }
void write_value(json::JsonWriter& w, ErrorCode v) { w.string_value(error_name(v)); }
template <typename E>
  requires std::is_enum_v<E> && requires(E e) { to_string(e); }
void write_value(json::JsonWriter& w, E v) {
  w.string_value(to_string(v));
}

template <typename T>
  requires Is<T, InputLocation> || Is<T, RunSummary>
void write_value(json::JsonWriter& w, const T& v);

struct FieldWriter {
  json::JsonWriter& w;

  template <typename T>
  void operator()(std::string_view name, const T& value) const {
    if constexpr (IsOptional<T>::value) {
      if (!value) return;  // absent: the key is left out
      w.key_unescaped(name);
      write_value(w, *value);
    } else {
      w.key_unescaped(name);
      write_value(w, value);
    }
  }
};

template <typename T>
  requires Is<T, InputLocation> || Is<T, RunSummary>
void write_value(json::JsonWriter& w, const T& v) {
  w.begin_object();
  for_each_field(v, FieldWriter{w});
  w.end_object();
}

// ---- reading --------------------------------------------------------------------------------

using simdjson::dom::element;
using simdjson::dom::object;

// "location" + "line" -> "location.line"
std::string field_path(std::string_view parent, std::string_view name) {
  if (parent.empty()) return std::string(name);
  std::string path;
  path.reserve(parent.size() + 1 + name.size());
  path.append(parent).push_back('.');
  path.append(name);
  return path;
}

ErrorInfo field_error(ErrorCode code, std::string path, std::string_view problem) {
  ErrorInfo e;
  e.code = code;
  e.message = fmt::format("event_from_json: field \"{}\" {}", path, problem);
  e.field = std::move(path);
  return e;
}

// Reads one value into `out`; on failure returns the error (naming `path`).
std::optional<ErrorInfo> read_value(element el, std::string& out, const std::string& path) {
  std::string_view s;
  if (el.get_string().get(s)) return field_error(ErrorCode::field_not_string, path, "is not a string");
  out.assign(s);
  return std::nullopt;
}

std::optional<ErrorInfo> read_value(element el, std::uint64_t& out, const std::string& path) {
  if (!el.is_int64() && !el.is_uint64()) {
    return field_error(ErrorCode::invalid_json, path, "is not an unsigned integer");
  }
  if (el.get_uint64().get(out)) {
    return field_error(ErrorCode::invalid_json, path, "is negative, expected an unsigned integer");
  }
  return std::nullopt;
}

std::optional<ErrorInfo> read_value(element el, std::uint32_t& out, const std::string& path) {
  std::uint64_t wide = 0;
  if (auto e = read_value(el, wide, path)) return e;
  if (wide > std::numeric_limits<std::uint32_t>::max()) {
    return field_error(ErrorCode::invalid_json, path, "is out of range (at most 4294967295)");
  }
  out = static_cast<std::uint32_t>(wide);
  return std::nullopt;
}

std::optional<ErrorInfo> read_value(element el, bool& out, const std::string& path) {
  if (el.get_bool().get(out)) return field_error(ErrorCode::invalid_json, path, "is not true or false");
  return std::nullopt;
}

// null stands for NaN or an infinity, which to_json writes as null.
std::optional<ErrorInfo> read_value(element el, double& out, const std::string& path) {
  if (el.is_null()) {
    out = std::numeric_limits<double>::quiet_NaN();
    return std::nullopt;
  }
  if (el.get_double().get(out)) return field_error(ErrorCode::invalid_json, path, "is not a number");
  return std::nullopt;
}

template <typename E>
  requires std::is_enum_v<E> && requires(E e, std::string_view n) { from_string(n, e); }
std::optional<ErrorInfo> read_value(element el, E& out, const std::string& path) {
  std::string_view s;
  if (el.get_string().get(s)) return field_error(ErrorCode::invalid_json, path, "is not a string");
  if (!from_string(s, out)) return field_error(ErrorCode::invalid_argument, path, "is not a known name");
  return std::nullopt;
}

std::optional<ErrorInfo> read_value(element el, ErrorCode& out, const std::string& path) {
  std::string_view s;
  if (el.get_string().get(s)) return field_error(ErrorCode::field_not_string, path, "is not a string");
  if (!error_from_name(s, out)) {
    return field_error(ErrorCode::invalid_json, path,
                       fmt::format("has an unknown error code \"{}\"", s));
  }
  return std::nullopt;
}

template <typename T>
  requires Is<T, InputLocation> || Is<T, RunSummary>
std::optional<ErrorInfo> read_value(element el, T& out, const std::string& path);

// Fields added to an event after the first release come last in its for_each_field(), from
// the one named here on: a line from an older writer lacks them, and a reader then keeps their
// defaults (docs/events.md, "Schema versions"). Every other field must be present.
template <typename T>
constexpr std::string_view first_added_field() {
  if constexpr (std::is_same_v<T, BatchProgress>) return "phase";
  return {};
}

struct FieldReader {
  object obj;
  std::string_view parent;  // path of the object read, "" for the top level
  std::optional<ErrorInfo>* error;
  std::string_view first_added = {};  // fields from this one on may be absent
  mutable bool in_added = false;

  template <typename T>
  void operator()(std::string_view name, T& out) const {
    if (*error) return;
    if (!first_added.empty() && name == first_added) in_added = true;
    element el;
    const bool missing = obj.at_key(name).get(el) != simdjson::SUCCESS;
    if constexpr (IsOptional<T>::value) {
      if (missing || el.is_null()) {
        out.reset();
        return;
      }
      typename T::value_type v{};
      *error = read_value(el, v, field_path(parent, name));
      if (!*error) out = v;
    } else {
      if (missing) {
        if (in_added) return;  // a line from an older writer: the default stays
        *error = field_error(ErrorCode::missing_field, field_path(parent, name), "is missing");
        return;
      }
      *error = read_value(el, out, field_path(parent, name));
    }
  }
};

template <typename T>
  requires Is<T, InputLocation> || Is<T, RunSummary>
std::optional<ErrorInfo> read_value(element el, T& out, const std::string& path) {
  object obj;
  if (el.get_object().get(obj)) return field_error(ErrorCode::invalid_json, path, "is not an object");
  std::optional<ErrorInfo> error;
  for_each_field(out, FieldReader{obj, path, &error});
  return error;
}

template <std::size_t I = 0>
std::optional<ErrorInfo> read_payload(std::string_view type, object obj, EventPayload& out) {
  if constexpr (I == kEventKinds) {
    ErrorInfo e;
    e.code = ErrorCode::invalid_argument;
    e.message = fmt::format("event_from_json: unknown event type \"{}\"", type);
    e.field = "type";
    return e;
  } else {
    using Payload = std::variant_alternative_t<I, EventPayload>;
    if (type != Payload::kType) return read_payload<I + 1>(type, obj, out);
    Payload& payload = out.template emplace<I>();
    std::optional<ErrorInfo> error;
    for_each_field(payload, FieldReader{obj, {}, &error, first_added_field<Payload>()});
    return error;
  }
}

}  // namespace

std::string_view event_type(const EventPayload& payload) noexcept {
  if (payload.valueless_by_exception()) return {};
  return kTypeNames[payload.index()];
}

void append_json(std::string& out, const PipelineEvent& event) {
  json::JsonWriter w(out);
  w.begin_object();
  w.key_unescaped("type").string_value(event_type(event.payload));
  w.key_unescaped("v").int_value(kEventSchemaVersion);
  w.key_unescaped("seq").uint_value(event.seq);
  w.key_unescaped("ts").fixed_value(event.timestamp, 6);
  w.key_unescaped("pipeline").string_value(event.pipeline_id);
  std::visit([&w](const auto& payload) { for_each_field(payload, FieldWriter{w}); }, event.payload);
  w.end_object();
}

std::string to_json(const PipelineEvent& event) {
  std::string out;
  out.reserve(256);
  append_json(out, event);
  return out;
}

Result<PipelineEvent> event_from_json(std::string_view json) {
  // One parser per thread: its buffers are reused from one call to the next.
  thread_local simdjson::dom::parser parser;

  element root;
  if (const auto err = parser.parse(json.data(), json.size()).get(root)) {
    ErrorInfo e;
    e.code = err == simdjson::UTF8_ERROR ? ErrorCode::invalid_utf8 : ErrorCode::invalid_json;
    e.message = fmt::format("event_from_json: the text is not valid JSON ({})", simdjson::error_message(err));
    e.detail = simdjson::error_message(err);
    return e;
  }
  object obj;
  if (root.get_object().get(obj)) {
    ErrorInfo e;
    e.code = ErrorCode::not_an_object;
    e.message = "event_from_json: the text is not a JSON object";
    return e;
  }

  // The version first: a newer schema may have changed anything else.
  element v;
  if (obj.at_key("v").get(v)) return field_error(ErrorCode::missing_field, "v", "is missing");
  std::int64_t version = 0;
  if (v.get_int64().get(version)) return field_error(ErrorCode::invalid_json, "v", "is not an integer");
  if (version < 1 || version > kEventSchemaVersion) {
    return field_error(ErrorCode::invalid_argument, "v",
                       fmt::format("is {}: this reader supports schema versions 1 to {}", version,
                                   kEventSchemaVersion));
  }

  element type_el;
  if (obj.at_key("type").get(type_el)) return field_error(ErrorCode::missing_field, "type", "is missing");
  std::string_view type;
  if (type_el.get_string().get(type)) {
    return field_error(ErrorCode::field_not_string, "type", "is not a string");
  }

  PipelineEvent event;
  std::optional<ErrorInfo> error;
  const FieldReader envelope{obj, {}, &error};
  envelope("seq", event.seq);
  envelope("ts", event.timestamp);
  envelope("pipeline", event.pipeline_id);
  if (error) return std::move(*error);
  if (auto e = read_payload(type, obj, event.payload)) return std::move(*e);
  return event;
}

double unix_time_now() noexcept {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count() / 1e6;
}

}  // namespace sluice
