#include "event_bus.hpp"

#include <algorithm>
#include <chrono>

namespace sluice {

EventBus::EventBus(std::string pipeline_id) : pipeline_id_(std::move(pipeline_id)) {}

SubscriptionId EventBus::subscribe(EventFilter filter, EventCallback callback) {
  SubscriptionId id = next_id_++;
  // During delivery the vector must not move under the running callback.
  (delivering_ ? pending_additions_ : subscribers_).push_back({id, filter, std::move(callback)});
  wanted_.merge(filter);
  return id;
}

void EventBus::unsubscribe(SubscriptionId id) {
  if (delivering_) {
    pending_removals_.push_back(id);
    return;
  }
  std::erase_if(subscribers_, [id](const Subscriber& s) { return s.id == id; });
  recompute_wanted();
}

void EventBus::recompute_wanted() {
  wanted_ = EventFilter{};
  for (const auto& s : subscribers_) wanted_.merge(s.filter);
}

std::uint64_t EventBus::publish(EventPayload payload) {
  if (delivering_) {
    // From inside a callback: delivered after the event being delivered, in order.
    nested_.push_back(std::move(payload));
    return seq_ + nested_.size();
  }
  std::uint64_t first = 0;
  for (;;) {
    PipelineEvent event{++seq_, unix_time_now(), pipeline_id_, std::move(payload)};
    if (first == 0) first = event.seq;
    const std::size_t kind = event.payload.index();
    {
      // Even when a callback throws, the bus goes on delivering later events.
      struct Delivering {
        bool& flag;
        explicit Delivering(bool& f) : flag(f) { flag = true; }
        ~Delivering() { flag = false; }
      } delivering(delivering_);
      for (auto& s : subscribers_) {
        if (s.filter.wants_index(kind)) s.callback(event);
      }
    }
    for (auto& s : pending_additions_) subscribers_.push_back(std::move(s));
    pending_additions_.clear();
    if (!pending_removals_.empty()) {
      auto removals = std::move(pending_removals_);
      pending_removals_.clear();
      for (SubscriptionId id : removals) unsubscribe(id);
    }
    if (nested_.empty()) return first;
    payload = std::move(nested_.front());
    nested_.pop_front();
  }
}



}  // namespace sluice
