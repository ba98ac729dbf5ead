#include "http.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>

#include <fmt/format.h>

#include <sluice/error.hpp>

#include "core/json_writer.hpp"

namespace sluice::http {

namespace {

constexpr std::size_t kHeldMax = 64u << 10;  // bytes read ahead while busy, at most
constexpr double kLinger_s = 2;              // after our last answer, the client's bytes are drained this long

}  // namespace

std::string error_json(std::string_view message, std::string_view type, std::string_view code) {
  std::string out = "{\"error\":{\"message\":";
  json::append_string(out, message);
  out += ",\"type\":";
  json::append_string(out, type);
  out += ",\"param\":null,\"code\":";
  if (code.empty()) {
    out += "null";
  } else {
    json::append_string(out, code);
  }
  out += "}}";
  return out;
}

std::string_view reason(int status) noexcept {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

double Server::now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Connection::Connection(Server& server) : server_(server) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  last_active_ = Server::now_s();
}

int Connection::on_message_begin(http_parser* p) {
  auto* c = static_cast<Connection*>(p->data);
  if (c->stop_parsing_) return 1;
  c->current_ = Request{};
  c->in_message_ = true;
  c->header_bytes_ = 0;
  c->field_.clear();
  c->in_value_ = false;
  c->expect_continue_ = false;
  c->message_started_ = Server::now_s();
  return 0;
}

bool Connection::header_bytes(std::size_t n) {
  header_bytes_ += n;
  if (header_bytes_ <= server_.limits_.max_header_bytes) return true;
  current_.early_status = 431;
  current_.early_message = fmt::format("the request line and headers are over {} bytes", server_.limits_.max_header_bytes);
  return false;
}

int Connection::on_url(http_parser* p, const char* at, std::size_t n) {
  auto* c = static_cast<Connection*>(p->data);
  if (!c->header_bytes(n)) return 1;
  c->current_.path.append(at, n);
  return 0;
}

int Connection::on_header_field(http_parser* p, const char* at, std::size_t n) {
  auto* c = static_cast<Connection*>(p->data);
  if (!c->header_bytes(n)) return 1;
  if (c->in_value_) {
    c->field_.clear();
    c->in_value_ = false;
  }
  for (std::size_t i = 0; i < n && c->field_.size() < 64; ++i) {
    c->field_ += static_cast<char>(std::tolower(static_cast<unsigned char>(at[i])));
  }
  return 0;
}

int Connection::on_header_value(http_parser* p, const char* at, std::size_t n) {
  auto* c = static_cast<Connection*>(p->data);
  if (!c->header_bytes(n)) return 1;
  c->in_value_ = true;
  if (c->field_ == "expect") {
    std::string v(at, n);
    std::transform(v.begin(), v.end(), v.begin(), [](unsigned char ch) { return std::tolower(ch); });
    if (v.find("100-continue") != std::string::npos) c->expect_continue_ = true;
  }
  return 0;
}

int Connection::on_headers_complete(http_parser* p) {
  auto* c = static_cast<Connection*>(p->data);
  Request& r = c->current_;
  r.method = p->method;
  if (const auto q = r.path.find_first_of("?#"); q != std::string::npos) r.path.resize(q);
  const Limits& limits = c->server_.limits_;
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > limits.max_body_bytes) {
    r.early_status = 413;
    r.early_message = fmt::format("the request body is {} bytes; this server takes at most {} (--max-request-bytes)",
                                  p->content_length, limits.max_body_bytes);
  } else if ((p->flags & F_CONTENTLENGTH) && c->server_.pending_bytes_ + p->content_length > limits.max_pending_bytes) {
    r.early_status = 429;
    r.early_message = fmt::format("the server holds {} bytes of requests not yet answered (--max-pending-bytes {}); "
                                  "retry later",
                                  c->server_.pending_bytes_, limits.max_pending_bytes);
  }
  if (r.early_status == 413 || (r.early_status != 0 && c->expect_continue_)) {
    // Said now, before the body is read (a client waiting for 100 Continue gets its answer at
    // once); the body is not read, so nothing after it can be, and the connection closes.
    r.keep_alive = false;
    r.queued = true;
    c->queued_.push_back(r);
    c->stop_parsing_ = true;
    c->close_after_ = true;
    return 1;  // no body: the message ends here
  }
  if (c->expect_continue_) c->write("HTTP/1.1 100 Continue\r\n\r\n", false);
  return 0;
}

int Connection::on_body(http_parser* p, const char* at, std::size_t n) {
  auto* c = static_cast<Connection*>(p->data);
  Request& r = c->current_;
  if (r.early_status == 429) return 0;  // read and dropped
  const Limits& limits = c->server_.limits_;
  if (r.body.size() + n > limits.max_body_bytes) {
    r.early_status = 413;
    r.early_message = fmt::format("the request body is over {} bytes (--max-request-bytes)", limits.max_body_bytes);
    return 1;
  }
  if (c->server_.pending_bytes_ + n > limits.max_pending_bytes) {
    r.early_status = 429;
    r.early_message = fmt::format("the server holds {} bytes of requests not yet answered (--max-pending-bytes {}); "
                                  "retry later",
                                  c->server_.pending_bytes_, limits.max_pending_bytes);
    c->server_.pending_bytes_ -= r.body.size();
    c->counted_ -= r.body.size();
    std::string().swap(r.body);
    return 0;
  }
  r.body.append(at, n);
  c->server_.pending_bytes_ += n;
  c->counted_ += n;
  return 0;
}

int Connection::on_message_complete(http_parser* p) {
  auto* c = static_cast<Connection*>(p->data);
  c->in_message_ = false;
  if (c->current_.queued) return 0;
  c->current_.keep_alive = http_should_keep_alive(p) != 0;
  c->queued_.push_back(std::move(c->current_));
  c->current_ = Request{};
  return 0;
}

void Connection::received(const char* data, std::size_t n) {
  last_active_ = Server::now_s();
  if (lingering_ || stop_parsing_) return;  // dropped
  if (busy()) {
    held_.append(data, n);
    if (held_.size() >= kHeldMax) read(false);
    return;
  }
  parse(data, n);
  next();
}

void Connection::parse(const char* data, std::size_t n) {
  while (n > 0 && !stop_parsing_) {
    const std::size_t done = http_parser_execute(&parser_, &server_.settings_, data, n);
    const auto err = HTTP_PARSER_ERRNO(&parser_);
    if (stop_parsing_) return;  // answered before its body (413, or a refusal awaited with 100-continue)
    if (err != HPE_OK) {
      // The stream cannot be read further: the requests complete so far are answered, then
      // this error, and the connection closes.
      Request bad = std::move(current_);
      current_ = Request{};
      in_message_ = false;
      if (bad.early_status == 0) {
        bad.early_status = 400;
        bad.early_message = fmt::format("malformed HTTP request: {}", http_errno_description(err));
      }
      bad.keep_alive = false;
      queued_.push_back(std::move(bad));
      stop_parsing_ = true;
      close_after_ = true;
      return;
    }
    if (!parser_.upgrade) return;
    // A request to switch protocols (h2c, websocket) is answered as HTTP/1.1, ignoring the
    // Upgrade header as RFC 9110 allows; what follows is read as HTTP/1.1 again.
    http_parser_init(&parser_, HTTP_REQUEST);
    parser_.data = this;
    data += done;
    n -= done;
  }
}

void Connection::read(bool on) {
  if (closing_ || on == reading_) return;
  if (on) {
    uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), &Server::on_alloc, &Server::on_read);
  } else {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  }
  reading_ = on;
}

void Connection::drop_queued() {
  for (const Request& q : queued_) {
    server_.pending_bytes_ -= q.body.size();
    counted_ -= q.body.size();
  }
  queued_.clear();
  std::string().swap(held_);
}

void Connection::next() {
  if (closing_ || lingering_ || handling_ || writes_ > 0) return;
  if (queued_.empty() && !held_.empty() && !stop_parsing_) {
    std::string bytes;
    bytes.swap(held_);
    parse(bytes.data(), bytes.size());
  }
  if (queued_.empty()) {
    if (close_after_) {
      finish();
      return;
    }
    // A request begun while the one before was with the model counts its time from now.
    if (in_message_) message_started_ = Server::now_s();
    read(true);
    return;
  }
  handling_ = true;
  Request r = std::move(queued_.front());
  queued_.pop_front();
  answering_bytes_ = r.body.size();
  if (!r.keep_alive) {
    // The client said it sends nothing more (or the stream is broken): what follows is dropped.
    drop_queued();
    stop_parsing_ = true;
    close_after_ = true;
  }
  if (server_.draining_) close_after_ = true;
  if (r.early_status != 0) {
    Response res;
    res.status = r.early_status;
    res.body = error_json(r.early_message, r.early_status == 429 ? "rate_limit_error" : "invalid_request_error");
    if (r.early_status == 429) res.headers.emplace_back("Retry-After", "1");
    if (server_.on_refused) server_.on_refused(r.path, r.early_status);
    respond(std::move(res));
    return;
  }
  server_.handler_(*this, r);
}

void Connection::respond(Response res) {
  if (closing_ || !handling_) return;
  handling_ = false;
  server_.pending_bytes_ -= answering_bytes_;
  counted_ -= answering_bytes_;
  answering_bytes_ = 0;
  const bool then_close = close_after_ && queued_.empty() && (held_.empty() || stop_parsing_);
  std::string out = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n", res.status,
                                reason(res.status), res.content_type, res.body.size());
  for (const auto& [k, v] : res.headers) out += fmt::format("{}: {}\r\n", k, v);
  out += then_close ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n";
  if (!res.head) out += res.body;
  write(std::move(out), then_close);
}

void Connection::write(std::string bytes, bool then_close) {
  struct Write {
    uv_write_t req;
    std::string bytes;
    Connection* conn;
    bool then_close;
  };
  auto* w = new Write{{}, std::move(bytes), this, then_close};
  uv_buf_t buf = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
  ++writes_;
  const int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1, [](uv_write_t* req, int status) {
    auto* w = reinterpret_cast<Write*>(req);
    Connection* c = w->conn;
    const bool then_close = w->then_close;
    delete w;
    // The connection outlives its writes: uv_close() runs their callbacks (cancelled) first.
    --c->writes_;
    if (c->closing_) return;
    c->last_active_ = Server::now_s();
    if (status != 0) {
      c->close();
    } else if (then_close) {
      c->finish();
    } else {
      c->next();
    }
  });
  if (rc != 0) {
    --writes_;
    delete w;
    close();
  }
}

void Connection::finish() {
  if (closing_ || lingering_) return;
  if (writes_ > 0 || handling_) {
    close_after_ = true;  // once those are done
    return;
  }
  // Our side first, then what the client still sends is read and dropped until it closes (or
  // a moment passes): closing at once with unread bytes would make the kernel reset the
  // connection, and the client could lose the answer.
  lingering_ = true;
  linger_since_ = Server::now_s();
  drop_queued();
  shutdown_.data = this;
  if (uv_shutdown(&shutdown_, reinterpret_cast<uv_stream_t*>(&tcp_), [](uv_shutdown_t* req, int status) {
        auto* c = static_cast<Connection*>(req->data);
        if (status != 0 && !c->closing_) c->close();
      }) != 0) {
    close();
    return;
  }
  read(true);
}

void Connection::close() {
  if (closing_) return;
  closing_ = true;
  if (handling_ && server_.on_close) server_.on_close(id_);
  server_.pending_bytes_ -= counted_;
  counted_ = 0;
  server_.forget(this);
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), [](uv_handle_t* h) { delete static_cast<Connection*>(h->data); });
}

Server::Server(uv_loop_t* loop, Limits limits, Handler handler)
    : loop_(loop), limits_(limits), handler_(std::move(handler)), read_buffer_(kHeldMax) {
  http_parser_settings_init(&settings_);
  settings_.on_message_begin = &Connection::on_message_begin;
  settings_.on_url = &Connection::on_url;
  settings_.on_header_field = &Connection::on_header_field;
  settings_.on_header_value = &Connection::on_header_value;
  settings_.on_headers_complete = &Connection::on_headers_complete;
  settings_.on_body = &Connection::on_body;
  settings_.on_message_complete = &Connection::on_message_complete;
}

Server::~Server() = default;

int Server::listen(const std::string& host, int port) {
  sockaddr_storage addr{};
  int rc = host.find(':') != std::string::npos ? uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr))
                                               : uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) {
    throw Error(ErrorCode::invalid_argument, fmt::format("cannot listen on {}: not an IP address ({})", host, uv_strerror(rc)));
  }
  uv_tcp_init(loop_, &listener_);
  listener_.data = this;
  listening_ = true;  // open: drain() closes it
  rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 511, &Server::on_connection);
  if (rc != 0) throw Error(ErrorCode::io_error, fmt::format("cannot listen on {}:{}: {}", host, port, uv_strerror(rc)));
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound), &len);
  const int chosen = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                                 : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  uv_timer_init(loop_, &sweep_);
  sweep_.data = this;
  sweeping_ = true;
  uv_timer_start(&sweep_, &Server::on_sweep, 250, 250);
  return chosen;
}

void Server::on_connection(uv_stream_t* listener, int status) {
  auto* self = static_cast<Server*>(listener->data);
  if (status != 0 || self->draining_) return;
  auto* c = new Connection(*self);
  uv_tcp_init(self->loop_, &c->tcp_);
  c->tcp_.data = c;
  if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&c->tcp_)) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp_), [](uv_handle_t* h) { delete static_cast<Connection*>(h->data); });
    return;
  }
  uv_tcp_nodelay(&c->tcp_, 1);
  c->id_ = self->next_id_++;
  self->connections_.emplace(c->id_, c);
  if (self->connections_.size() > self->limits_.max_connections) {
    Request busy;
    busy.early_status = 503;
    busy.early_message = fmt::format("the server has {} connections open (--max-connections)", self->limits_.max_connections);
    busy.keep_alive = false;
    c->queued_.push_back(std::move(busy));
  }
  c->next();
}

void Server::on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
  auto& rb = static_cast<Connection*>(h->data)->server_.read_buffer_;
  // One buffer for every connection: each read is parsed (or copied aside) before the loop
  // goes on.
  *buf = uv_buf_init(rb.data(), static_cast<unsigned>(rb.size()));
}

void Server::on_read(uv_stream_t* stream, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(stream->data);
  if (n == UV_EOF) {
    // The client sends nothing more: what it sent is answered, then the connection closes. It
    // may still be reading (a half close).
    c->read(false);
    if (c->lingering_) {
      c->close();
      return;
    }
    c->close_after_ = true;
    if (!c->busy() && c->held_.empty()) {
      c->stop_parsing_ = true;
      c->finish();
    } else {
      c->next();
    }
    return;
  }
  if (n < 0) {
    // Reset or failed: nobody is there to answer.
    c->close();
    return;
  }
  if (n > 0) c->received(buf->base, static_cast<std::size_t>(n));
}

void Server::on_sweep(uv_timer_t* timer) {
  auto* self = static_cast<Server*>(timer->data);
  const double now = now_s();
  std::vector<Connection*> gone, late;
  for (auto& [id, c] : self->connections_) {
    if (c->closing_) continue;
    if (c->lingering_) {
      if (now - c->linger_since_ > kLinger_s) gone.push_back(c);
    } else if (c->writes_ > 0) {
      // An answer the client does not read: no byte of it left in a whole idle timeout.
      const std::size_t queued = uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(&c->tcp_));
      if (queued != c->write_queue_) {
        c->write_queue_ = queued;
        c->last_active_ = now;
      } else if (now - c->last_active_ > self->limits_.idle_timeout_s) {
        gone.push_back(c);
      }
    } else if (!c->handling_ && c->queued_.empty()) {
      if (c->in_message_ && now - c->message_started_ > self->limits_.request_timeout_s) {
        late.push_back(c);
      } else if (!c->in_message_ && c->held_.empty() && now - c->last_active_ > self->limits_.idle_timeout_s) {
        gone.push_back(c);
      }
    }
  }
  for (Connection* c : gone) c->close();
  for (Connection* c : late) {
    Request r = std::move(c->current_);  // its body bytes stay counted until answered
    c->current_ = Request{};
    c->in_message_ = false;
    r.early_status = 408;
    r.early_message = fmt::format("the request was not received in {} s", self->limits_.request_timeout_s);
    r.keep_alive = false;
    c->queued_.push_back(std::move(r));
    c->stop_parsing_ = true;
    c->close_after_ = true;
    c->next();
  }
}

void Server::forget(Connection* c) {
  connections_.erase(c->id_);
  check_empty();
}

Connection* Server::find(std::uint64_t id) const {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : it->second;
}

void Server::drain(std::function<void()> on_empty) {
  if (draining_) return;
  draining_ = true;
  on_empty_ = std::move(on_empty);
  if (listening_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    listening_ = false;
  }
  std::vector<Connection*> quiet;
  for (auto& [id, c] : connections_) {
    c->close_after_ = true;
    if (!c->busy() && !c->lingering_) quiet.push_back(c);
  }
  // Nothing received to answer: a partial request is dropped.
  for (Connection* c : quiet) {
    c->stop_parsing_ = true;
    c->finish();
  }
  check_empty();
}

void Server::check_empty() {
  if (!draining_ || !connections_.empty()) return;
  if (sweeping_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&sweep_), nullptr);
    sweeping_ = false;
  }
  if (on_empty_) {
    auto f = std::move(on_empty_);
    on_empty_ = nullptr;
    f();
  }
}

}  // namespace sluice::http
