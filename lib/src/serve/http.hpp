#pragma once
// HTTP/1.1 on libuv for the embedding server: connections, Node's http-parser, limits and
// answers. Routing and the embedding work are the server's (server.cpp); this file knows only
// requests and responses. Thread: the loop thread, all of it.
//
// A connection answers its requests in order, one at a time: the next request is handled only
// once the answer before it has been written out (so a client that does not read its answers
// makes the server hold one answer, not all of them). Bytes that arrive meanwhile wait
// unparsed, up to one read buffer (64 KiB), and reading then stops. A connection closes only
// once its last answer is written; it then shuts down its side and drains what the client
// still sends for a moment, so the client reads the answer before the close.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <http_parser.h>
#include <uv.h>

namespace sluice::http {

struct Limits {
  std::size_t max_body_bytes = 8u << 20;     // 413 past it, and the connection closes
  std::size_t max_header_bytes = 16u << 10;  // request line and headers; 431 past it
  std::size_t max_connections = 1024;        // one more gets 503 and is closed
  // Body bytes of the requests received and not yet answered, all connections together: a
  // request that would pass it is answered 429 (its body is read and dropped).
  std::size_t max_pending_bytes = 256u << 20;
  double idle_timeout_s = 60;     // also: an answer the client does not read for this long
  double request_timeout_s = 30;  // a request must arrive whole within this of its first byte
};

struct Request {
  unsigned method = 0;  // enum http_method
  std::string path;     // the URL's path, without the query
  std::string body;
  bool keep_alive = true;
  int early_status = 0; // answered without the handler (a limit was passed while reading)
  std::string early_message;
  bool queued = false;  // already queued (answered before its body was read)
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra ones (Retry-After, Allow)
  bool head = false;  // a HEAD request: the GET's headers (its Content-Length), no body
};

class Server;

class Connection {
 public:
  explicit Connection(Server& server);
  // Answers the request being handled. The next request queued is handled once this answer is
  // written.
  void respond(Response response);
  bool closing() const noexcept { return closing_; }
  std::uint64_t id() const noexcept { return id_; }

 private:
  friend class Server;
  static int on_message_begin(http_parser* p);
  static int on_url(http_parser* p, const char* at, std::size_t n);
  static int on_header_field(http_parser* p, const char* at, std::size_t n);
  static int on_header_value(http_parser* p, const char* at, std::size_t n);
  static int on_headers_complete(http_parser* p);
  static int on_body(http_parser* p, const char* at, std::size_t n);
  static int on_message_complete(http_parser* p);
  void received(const char* data, std::size_t n);
  void parse(const char* data, std::size_t n);
  void next();
  void close();
  void finish();  // shut down our side, drain, then close
  void write(std::string bytes, bool then_close);
  void read(bool on);
  bool header_bytes(std::size_t n);
  bool busy() const noexcept { return handling_ || writes_ > 0 || !queued_.empty(); }
  void drop_queued();

  Server& server_;
  uv_tcp_t tcp_{};
  uv_shutdown_t shutdown_{};
  http_parser parser_{};
  std::uint64_t id_ = 0;
  Request current_;
  bool in_message_ = false;
  std::size_t header_bytes_ = 0;
  std::string field_;          // the header name being read, lower case
  bool in_value_ = false;
  bool expect_continue_ = false;
  std::deque<Request> queued_;
  std::string held_;           // bytes received while busy, not parsed yet
  std::size_t counted_ = 0;    // body bytes of current_ and queued_ counted in pending_bytes_
  std::size_t answering_bytes_ = 0;  // those of the request with the handler
  bool handling_ = false;      // a request is with the handler
  int writes_ = 0;             // writes not yet completed
  bool reading_ = false;
  bool closing_ = false;
  bool close_after_ = false;   // no more requests: close once the answers due are written
  bool stop_parsing_ = false;  // what else arrives is dropped (a fatal error, or the client said close)
  bool lingering_ = false;     // our side shut down; draining the client's until it closes
  double message_started_ = 0;
  double last_active_ = 0;
  double linger_since_ = 0;
  std::size_t write_queue_ = 0;  // bytes waiting to be written, at the last sweep
};

// The listener and every connection. `handler` gets each complete request and answers it,
// now or later, with Connection::respond() (a handler that answers later finds the connection
// with Server::find(), which returns null once it closed).
class Server {
 public:
  using Handler = std::function<void(Connection&, Request&)>;
  Server(uv_loop_t* loop, Limits limits, Handler handler);
  ~Server();
  // Binds and listens; returns the port. Throws sluice::Error.
  int listen(const std::string& host, int port);
  // Stops accepting; closes the connections that have nothing received to answer, and the
  // others once answered. `on_empty` runs once no connection is left (the server's own handles
  // closed by then).
  void drain(std::function<void()> on_empty);
  std::size_t connections() const noexcept { return connections_.size(); }
  bool draining() const noexcept { return draining_; }
  Connection* find(std::uint64_t id) const;
  std::size_t pending_bytes() const noexcept { return pending_bytes_; }
  static double now_s();
  // Called with a connection's id when it closes (the client reset it, or it was closed for a
  // timeout) while a request of it is with the handler.
  std::function<void(std::uint64_t)> on_close;
  // Called for each request answered without the handler (a limit passed while reading it).
  std::function<void(std::string_view path, int status)> on_refused;

 private:
  friend class Connection;
  static void on_connection(uv_stream_t* listener, int status);
  static void on_alloc(uv_handle_t*, std::size_t, uv_buf_t* buf);
  static void on_read(uv_stream_t* stream, ssize_t n, const uv_buf_t* buf);
  static void on_sweep(uv_timer_t* timer);
  void forget(Connection* c);
  void check_empty();

  uv_loop_t* loop_;
  Limits limits_;
  Handler handler_;
  uv_tcp_t listener_{};
  uv_timer_t sweep_{};
  bool listening_ = false;
  bool sweeping_ = false;
  bool draining_ = false;
  std::function<void()> on_empty_;
  std::unordered_map<std::uint64_t, Connection*> connections_;
  std::size_t pending_bytes_ = 0;
  std::uint64_t next_id_ = 1;
  http_parser_settings settings_{};
  std::vector<char> read_buffer_;
};

// "OK", "Bad Request", ... for the statuses the server sends.
std::string_view reason(int status) noexcept;

// An error answer's body in OpenAI's shape: {"error":{"message":...,"type":...,"param":null,
// "code":...}}, `code` null when empty.
std::string error_json(std::string_view message, std::string_view type, std::string_view code = {});

}  // namespace sluice::http
