#include "http_client.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>

#include <curl/curl.h>
#include <uv.h>

#include <fmt/format.h>

#include <sluice/error.hpp>

namespace sluice::remote_http {

namespace {
constexpr std::size_t kMaxAnswerBytes = std::size_t{1} << 30;  // an answer larger than this is refused
}

struct Client::Transfer {
  Request request;
  Response response;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  char errbuf[CURL_ERROR_SIZE] = {};
  bool done = false;       // guarded by Impl::mu
  bool abandoned = false;  // guarded by Impl::mu: its waiter left
};

struct Client::Impl {
  uv_loop_t loop{};
  uv_async_t async{};
  uv_timer_t timer{};
  CURLM* multi = nullptr;
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::shared_ptr<Transfer>> incoming;  // guarded by mu
  bool stopping = false;                           // guarded by mu
  std::map<CURL*, std::shared_ptr<Transfer>> active;  // the loop's

  struct Poll {
    uv_poll_t poll;
    curl_socket_t fd;
    Impl* impl;
  };

  Impl() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    uv_loop_init(&loop);
    uv_async_init(&loop, &async, &Impl::on_async);
    async.data = this;
    uv_timer_init(&loop, &timer);
    timer.data = this;
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &Impl::on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &Impl::on_timer_set);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, this);
    thread = std::thread([this] { uv_run(&loop, UV_RUN_DEFAULT); });
  }

  ~Impl() {
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    uv_async_send(&async);
    thread.join();
    uv_loop_close(&loop);
  }

  static int on_socket(CURL*, curl_socket_t s, int action, void* userp, void* socketp) {
    auto* self = static_cast<Impl*>(userp);
    auto* p = static_cast<Poll*>(socketp);
    if (action == CURL_POLL_REMOVE) {
      if (p) {
        uv_poll_stop(&p->poll);
        uv_close(reinterpret_cast<uv_handle_t*>(&p->poll), [](uv_handle_t* h) { delete static_cast<Poll*>(h->data); });
        curl_multi_assign(self->multi, s, nullptr);
      }
      return 0;
    }
    if (!p) {
      p = new Poll{{}, s, self};
      uv_poll_init_socket(&self->loop, &p->poll, s);
      p->poll.data = p;
      curl_multi_assign(self->multi, s, p);
    }
    int events = 0;
    if (action == CURL_POLL_IN || action == CURL_POLL_INOUT) events |= UV_READABLE;
    if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT) events |= UV_WRITABLE;
    uv_poll_start(&p->poll, events, &Impl::on_poll);
    return 0;
  }

  static void on_poll(uv_poll_t* h, int status, int events) {
    auto* p = static_cast<Poll*>(h->data);
    Impl* self = p->impl;  // p may be closed by the call below
    int flags = 0;
    if (status < 0) {
      flags = CURL_CSELECT_ERR;
    } else {
      if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
      if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    }
    int running = 0;
    curl_multi_socket_action(self->multi, p->fd, flags, &running);
    self->check_done();
  }

  static int on_timer_set(CURLM*, long ms, void* userp) {
    auto* self = static_cast<Impl*>(userp);
    if (ms < 0) {
      uv_timer_stop(&self->timer);
    } else {
      uv_timer_start(&self->timer, &Impl::on_timeout, static_cast<std::uint64_t>(ms), 0);
    }
    return 0;
  }

  static void on_timeout(uv_timer_t* t) {
    auto* self = static_cast<Impl*>(t->data);
    int running = 0;
    curl_multi_socket_action(self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    self->check_done();
  }

  static std::size_t on_data(char* data, std::size_t size, std::size_t n, void* userp) {
    auto* t = static_cast<Transfer*>(userp);
    if (t->response.body.size() + size * n > kMaxAnswerBytes) return 0;  // the transfer fails
    t->response.body.append(data, size * n);
    return size * n;
  }

  static std::size_t on_header(char* data, std::size_t size, std::size_t n, void* userp) {
    auto* t = static_cast<Transfer*>(userp);
    std::string_view line(data, size * n);
    if (line.starts_with("HTTP/")) {
      t->response.headers.clear();  // a new answer (after 100 Continue, say)
      return size * n;
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return size * n;
    std::string name(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.remove_suffix(1);
    t->response.headers[name] = std::string(value);
    return size * n;
  }

  void start(const std::shared_ptr<Transfer>& t) {
    CURL* e = curl_easy_init();
    t->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, t->request.url.c_str());
    if (!t->request.body.empty()) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->request.body.data());
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t->request.body.size()));
    }
    for (const std::string& h : t->request.headers) t->headers = curl_slist_append(t->headers, h.c_str());
    // No "Expect: 100-continue" wait before a large body.
    t->headers = curl_slist_append(t->headers, "Expect:");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    const long ms = static_cast<long>(std::max(1.0, t->request.timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, std::min(ms, 30000L));
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Impl::on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Impl::on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get());
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
    active.emplace(e, t);
    curl_multi_add_handle(multi, e);
  }

  void check_done() {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* e = msg->easy_handle;
      auto it = active.find(e);
      if (it == active.end()) continue;
      std::shared_ptr<Transfer> t = it->second;
      active.erase(it);
      const CURLcode result = msg->data.result;
      if (result == CURLE_OK) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &t->response.status);
      } else {
        t->response.status = 0;
        t->response.timed_out = result == CURLE_OPERATION_TIMEDOUT;
        t->response.error = t->errbuf[0] ? std::string(t->errbuf) : std::string(curl_easy_strerror(result));
      }
      curl_multi_remove_handle(multi, e);
      curl_easy_cleanup(e);
      curl_slist_free_all(t->headers);
      t->easy = nullptr;
      t->headers = nullptr;
      {
        std::lock_guard lock(mu);
        t->done = true;
      }
      cv.notify_all();
    }
  }

  static void on_async(uv_async_t* h) {
    auto* self = static_cast<Impl*>(h->data);
    std::deque<std::shared_ptr<Transfer>> fresh;
    bool stop = false;
    {
      std::lock_guard lock(self->mu);
      fresh.swap(self->incoming);
      stop = self->stopping;
    }
    for (auto& t : fresh) self->start(t);
    // Transfers whose waiters left: dropped.
    std::vector<std::shared_ptr<Transfer>> gone;
    {
      std::lock_guard lock(self->mu);
      for (auto& [e, t] : self->active) {
        if (t->abandoned || stop) gone.push_back(t);
      }
    }
    for (auto& t : gone) {
      self->active.erase(t->easy);
      curl_multi_remove_handle(self->multi, t->easy);
      curl_easy_cleanup(t->easy);
      curl_slist_free_all(t->headers);
      t->easy = nullptr;
      t->headers = nullptr;
      {
        std::lock_guard lock(self->mu);
        t->done = true;
      }
    }
    if (!gone.empty()) self->cv.notify_all();
    if (stop) {
      // Closes the cached connections; curl's REMOVE callbacks close their polls.
      curl_multi_cleanup(self->multi);
      self->multi = nullptr;
      uv_timer_stop(&self->timer);
      uv_close(reinterpret_cast<uv_handle_t*>(&self->timer), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&self->async), nullptr);
      uv_walk(
          &self->loop,
          [](uv_handle_t* handle, void*) {
            if (!uv_is_closing(handle)) uv_close(handle, [](uv_handle_t* h) {
                if (h->type == UV_POLL) delete static_cast<Poll*>(h->data);
              });
          },
          nullptr);
    }
  }
};

Client::Client() : impl_(std::make_unique<Impl>()) {}
Client::~Client() = default;

bool Client::perform(const Request& request, Response& response, const std::atomic<bool>& cancelled) {
  auto t = std::make_shared<Transfer>();
  t->request = request;
  {
    std::lock_guard lock(impl_->mu);
    impl_->incoming.push_back(t);
  }
  uv_async_send(&impl_->async);
  std::unique_lock lock(impl_->mu);
  impl_->cv.wait(lock, [&] { return t->done || cancelled.load(); });
  if (!t->done) {
    t->abandoned = true;
    lock.unlock();
    uv_async_send(&impl_->async);
    return false;
  }
  response = std::move(t->response);
  return true;
}

void Client::cancel_waits() {
  { std::lock_guard lock(impl_->mu); }
  impl_->cv.notify_all();
}

}  // namespace sluice::remote_http
