#pragma once
// An HTTP client for the remote backend: libcurl's multi-socket interface driven by a libuv loop
// on a thread of its own, so any number of requests are in flight on one thread. Other threads
// submit requests and wait for their answers (or are woken by cancel()). Thread: any, except
// where said.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sluice::remote_http {

struct Request {
  std::string url;
  std::string body;                  // POSTed when not empty, else GET
  std::vector<std::string> headers;  // "Name: value"
  double timeout_s = 120;            // the whole exchange
};

struct Response {
  long status = 0;           // HTTP status; 0 when no answer came (then `error` says why)
  std::string body;
  std::map<std::string, std::string> headers;  // names in lower case; the last of a repeated one
  std::string error;         // the transfer's failure (connection refused, timed out, ...)
  bool timed_out = false;
};

class Client {
 public:
  Client();
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends `request` and waits for its answer. Returns false (and abandons the transfer) when
  // `cancelled` (checked when cancel() wakes the waiters) became true first.
  bool perform(const Request& request, Response& response, const std::atomic<bool>& cancelled);
  // Wakes every perform() to check its `cancelled` flag.
  void cancel_waits();

 private:
  struct Transfer;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::remote_http
