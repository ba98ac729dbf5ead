#pragma once
/// A Model whose calls go to a remote embedding API with the OpenAI request and answer
/// (`POST <url>/embeddings`): OpenAI itself, or a TEI, vLLM, Ollama, infinity or
/// `pipeline-run serve` server (docs/remote.md).
///
/// The pipeline gives it texts (Model::wants_texts()), in batches bounded by its batch_size
/// (inputs per request) and max_batch_tokens (tokens per request). Each call is one request,
/// sent again on a 429, a 5xx, a timeout, a dropped connection or an unreadable answer, with
/// exponential backoff and jitter (or the server's Retry-After), within max_retries and
/// max_retry_s; client-side rate limits (requests and tokens a minute, token buckets) and the
/// server's x-ratelimit-* headers space the requests out. A 4xx that will not pass (400, 413,
/// 422) fails the call with model_error, so the pipeline tries the batch's records one by one
/// and only the bad one fails; 401, 403 and 404 (key, permission, URL or model) fail the run
/// (backend_unavailable). HTTP runs on libcurl's multi-socket interface driven by a libuv
/// loop of the model's own.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include <sluice/model.hpp>
#include <sluice/tokenizer.hpp>

namespace sluice {

struct RemoteOptions {
  /// The API's base URL, e.g. "https://api.openai.com/v1" or "http://127.0.0.1:8080/v1":
  /// requests go to URL + "/embeddings". A user:password in it is never printed.
  std::string url;
  /// The request's "model" (required: OpenAI needs it; other servers may ignore it).
  std::string model;
  /// Sent as "Authorization: Bearer KEY" when not empty. Never written to events, logs,
  /// checkpoints or error messages.
  std::string api_key;
  int concurrency = 4;          ///< requests in flight at once (Model::calls_in_flight())
  double requests_per_minute = 0;  ///< client-side limit; 0: none
  double tokens_per_minute = 0;    ///< client-side limit, on the estimate before a call and the answer's usage after; 0: none
  int max_retries = 8;          ///< attempts after the first, at most, per call
  double max_retry_s = 600;     ///< time one call may spend on retries, at most
  double timeout_s = 120;       ///< one request, at most
  double backoff_s = 0.5;       ///< the first backoff (doubled each time, with jitter, to at most 60 s)
  /// The vectors' size; 0: asked with one short request when connecting (billed: a few
  /// tokens), which also checks the URL, the key and the model before the run starts.
  std::uint32_t dimensions = 0;
  /// The longest input, in the tokenizer's tokens, that the run sends (longer ones are
  /// truncated or fail, as --long-input says, when the tokenizer is the model's own; an
  /// estimating tokenizer never truncates: the API decides).
  std::uint32_t max_input_tokens = 8192;
  /// How the run counts tokens: the API model's own tokenizer.json, or (empty) an estimate of
  /// a token per `bytes_per_token` bytes. It decides the batches and what is truncated, so it
  /// is part of the model's identity (the file by content) and of the checkpoint's fingerprint.
  std::filesystem::path tokenizer_file;
  double bytes_per_token = 3.0;
};

/// Connects (and probes the dimensions, unless given). Throws sluice::Error:
/// backend_unavailable when the API cannot be reached or refuses the key, the URL or the
/// model; invalid_argument for options out of range.
std::shared_ptr<Model> connect_remote_model(const RemoteOptions& options);

/// A tokenizer for runs on an API whose tokenizer this machine does not have: it counts a
/// token per `bytes_per_token` bytes of text (rounded up), for batching and rate limits only.
/// It never truncates: an input longer than the API takes gets the API's own error.
std::unique_ptr<Tokenizer> make_estimating_tokenizer(double bytes_per_token = 3.0);

/// `url` with any user:password replaced by "***" (for messages and fingerprints).
std::string redact_url(const std::string& url);

}  // namespace sluice
