#include "http.hpp"

#include <algorithm>
#include <chrono>
#include <strings.h>

#include <fmt/format.h>

#include <sluice/error.hpp>

namespace sluice::http {

std::string_view reason(int status) noexcept {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
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

namespace {

std::string error_json(std::string_view message, std::string_view type) {
  // The OpenAI error shape; the message is plain ASCII text of ours.
  std::string out = "{\"error\":{\"message\":\"";
  for (char c : message) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  out += fmt::format("\",\"type\":\"{}\",\"param\":null,\"code\":null}}}}", type);
  return out;
}

}  // namespace

Connection::Connection(Server& server) : server_(server) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  last_active_ = Server::now_s();
}

int Connection::on_message_begin(http_parser* p) {
  auto* c = static_cast<Connection*>(p->data);
  c->current_ = Request{};
  c->in_message_ = true;
  c->header_bytes_ = 0;
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

int Connection::on_header_field(http_parser* p, const char*, std::size_t n) {
  auto* c = static_cast<Connection*>(p->data);
  return c->header_bytes(n) ? 0 : 1;
}

int Connection::on_header_value(http_parser* p, const char*, std::size_t n) {
  auto* c = static_cast<Connection*>(p->data);
  return c->header_bytes(n) ? 0 : 1;
}

int Connection::on_headers_complete(http_parser* p) {
  auto* c = static_cast<Connection*>(p->data);
  Request& r = c->current_;
  r.method = p->method;
  r.minor = p->http_minor;
  if (const auto q = r.path.find_first_of("?#"); q != std::string::npos) r.path.resize(q);
  const Limits& limits = c->server_.limits_;
  // A declared length past the limit is refused before its body is read.
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > limits.max_body_bytes) {
    r.early_status = 413;
    r.early_message = fmt::format("the request body is {} bytes; this server takes at most {} (--max-request-bytes)",
                                  p->content_length, limits.max_body_bytes);
    return 0;
  }
  if ((p->flags & F_CONTENTLENGTH) && c->server_.pending_bytes_ + p->content_length > limits.max_pending_bytes) {
    r.early_status = 429;
    r.early_message = fmt::format("the server holds {} bytes of requests not yet answered (--max-pending-bytes {}); "
                                  "retry later",
                                  c->server_.pending_bytes_, limits.max_pending_bytes);
  }
  return 0;
}

int Connection::on_body(http_parser* p, const char* at, std::size_t n) {
  auto* c = static_cast<Connection*>(p->data);
  Request& r = c->current_;
  if (r.early_status == 429) return 0;  // read and dropped
  if (r.early_status != 0) return 1;
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
    r.body.clear();
    r.body.shrink_to_fit();
    return 0;
  }
  r.body.append(at, n);
  c->server_.pending_bytes_ += n;
  c->counted_ += n;
  return 0;
}

int Connection::on_message_complete(http_parser* p) {
  auto* c = static_cast<Connection*>(p->data);
  c->current_.keep_alive = http_should_keep_alive(p) != 0;
  c->queued_.push_back(std::move(c->current_));
  c->current_ = Request{};
  c->in_message_ = false;
  return 0;
}

void Connection::parse(const char* data, std::size_t n) {
  last_active_ = Server::now_s();
  const std::size_t done = http_parser_execute(&parser_, &server_.settings_, data, n);
  const auto err = HTTP_PARSER_ERRNO(&parser_);
  if (err != HPE_OK || (done != n && !parser_.upgrade)) {
    // The stream cannot be read further: answer what was complete, then say why, and close.
    Request bad = std::move(current_);
    current_ = Request{};
    in_message_ = false;
    if (bad.early_status == 0) {
      bad.early_status = 400;
      bad.early_message = fmt::format("malformed HTTP request: {}", http_errno_description(err));
    }
    bad.keep_alive = false;
    queued_.push_back(std::move(bad));
    close_after_ = true;
  } else if (parser_.upgrade) {
    Request bad;
    bad.early_status = 400;
    bad.early_message = "protocol upgrades are not supported";
    bad.keep_alive = false;
    queued_.push_back(std::move(bad));
    close_after_ = true;
  }
  next();
}

void Connection::next() {
  if (closing_ || handling_) return;
  if (queued_.empty()) {
    if (close_after_) {
      close();
      return;
    }
    if (!reading_) {
      uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), &Server::on_alloc, &Server::on_read);
      reading_ = true;
    }
    return;
  }
  // One request at a time: nothing more is read until it is answered.
  if (reading_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    reading_ = false;
  }
  handling_ = true;
  Request r = std::move(queued_.front());
  queued_.pop_front();
  answering_bytes_ = r.body.size();
  if (r.early_status != 0) {
    Response res;
    res.status = r.early_status;
    res.body = error_json(r.early_message, r.early_status == 429 ? "rate_limit_error" : "invalid_request_error");
    if (r.early_status == 429) res.headers.emplace_back("Retry-After", "1");
    // A body left unread (413, 431) makes the rest of the stream meaningless.
    if (r.early_status != 429) close_after_ = true;
    if (!r.keep_alive) close_after_ = true;
    if (server_.on_refused) server_.on_refused(r.path, r.early_status);
    respond(std::move(res));
    return;
  }
  if (!r.keep_alive) close_after_ = true;
  if (server_.draining_ && queued_.empty()) close_after_ = true;
  server_.handler_(*this, r);
}

void Connection::respond(Response res) {
  if (closing_) return;
  handling_ = false;
  server_.pending_bytes_ -= answering_bytes_;
  counted_ -= answering_bytes_;
  answering_bytes_ = 0;
  if (server_.draining_ && queued_.empty()) close_after_ = true;
  const bool then_close = close_after_ && queued_.empty();
  std::string out = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n", res.status,
                                reason(res.status), res.content_type, res.body.size());
  for (const auto& [k, v] : res.headers) out += fmt::format("{}: {}\r\n", k, v);
  out += then_close ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n";
  out += res.body;
  last_active_ = Server::now_s();
  write(std::move(out), then_close);
  if (!then_close) next();
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
  const int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1, [](uv_write_t* req, int status) {
    auto* w = reinterpret_cast<Write*>(req);
    // The connection outlives its writes: uv_close() runs the close callback after them.
    if ((status != 0 || w->then_close) && !w->conn->closing_) w->conn->close();
    delete w;
  });
  if (rc != 0) {
    delete w;
    close();
  }
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
    : loop_(loop), limits_(limits), handler_(std::move(handler)), read_buffer_(64 << 10) {
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
  rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 511, &Server::on_connection);
  if (rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    throw Error(ErrorCode::io_error, fmt::format("cannot listen on {}:{}: {}", host, port, uv_strerror(rc)));
  }
  listening_ = true;
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound), &len);
  const int chosen = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                                 : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  uv_timer_init(loop_, &sweep_);
  sweep_.data = this;
  uv_timer_start(&sweep_, &Server::on_sweep, 1000, 1000);
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
    c->close_after_ = true;
  }
  c->next();
}

void Server::on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
  auto& rb = static_cast<Connection*>(h->data)->server_.read_buffer_;
  // One buffer for every connection: each read is parsed before the loop goes on.
  *buf = uv_buf_init(rb.data(), static_cast<unsigned>(rb.size()));
}

void Server::on_read(uv_stream_t* stream, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(stream->data);
  if (n < 0) {
    // The client closed (or the socket failed): what it sent and awaits is dropped.
    c->close();
    return;
  }
  if (n > 0) c->parse(buf->base, static_cast<std::size_t>(n));
}

void Server::on_sweep(uv_timer_t* timer) {
  auto* self = static_cast<Server*>(timer->data);
  const double now = now_s();
  std::vector<Connection*> idle, late;
  for (auto& [id, c] : self->connections_) {
    if (c->closing_ || c->handling_ || !c->queued_.empty()) continue;
    if (c->in_message_ && now - c->message_started_ > self->limits_.request_timeout_s) {
      late.push_back(c);
    } else if (!c->in_message_ && now - c->last_active_ > self->limits_.idle_timeout_s) {
      idle.push_back(c);
    }
  }
  for (Connection* c : idle) c->close();
  for (Connection* c : late) {
    Request r = std::move(c->current_);
    c->current_ = Request{};
    c->in_message_ = false;
    r.early_status = 408;
    r.early_message = fmt::format("the request was not received in {} s", self->limits_.request_timeout_s);
    r.keep_alive = false;
    c->queued_.push_back(std::move(r));
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
    uv_close(reinterpret_cast<uv_handle_t*>(&sweep_), nullptr);
    listening_ = false;
  }
  std::vector<Connection*> quiet;
  for (auto& [id, c] : connections_) {
    if (c->handling_ || !c->queued_.empty()) {
      c->close_after_ = true;
    } else {
      quiet.push_back(c);
    }
  }
  for (Connection* c : quiet) c->close();
  check_empty();
}

void Server::check_empty() {
  if (draining_ && connections_.empty() && on_empty_) {
    auto f = std::move(on_empty_);
    on_empty_ = nullptr;
    f();
  }
}

}  // namespace sluice::http
