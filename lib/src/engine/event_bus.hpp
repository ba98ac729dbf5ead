#pragma once
/// EventBus: delivers pipeline events to subscribers, on the loop thread, in order.
/// Internal: a program subscribes through Pipeline::subscribe() or reads an EventStream.

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include <sluice/events.hpp>

namespace sluice {

/// Thread: loop. Every method, and every callback, runs on the thread that owns the
/// pipeline's loop. A callback may subscribe or unsubscribe (it takes effect for the next
/// event) but must not block for long: it holds up the loop.
class EventBus {
 public:
  explicit EventBus(std::string pipeline_id);

  /// Adds a subscriber for the kinds in `filter`; returns its id for unsubscribe().
  SubscriptionId subscribe(EventFilter filter, EventCallback callback);
  /// Removes a subscriber; unknown ids are ignored.
  void unsubscribe(SubscriptionId id);

  /// Whether any subscriber wants this kind: check before building an expensive payload.
  template <typename Payload>
  bool wants() const {
    return wanted_.wants<Payload>();
  }

  /// Stamps the envelope (next sequence number, current time) and delivers to each
  /// subscriber that wants this kind. Returns the event's sequence number. Called from inside
  /// a callback, the event is delivered once the one being delivered has reached every
  /// subscriber (its number is then the one it will get).
  std::uint64_t publish(EventPayload payload);

  const std::string& pipeline_id() const noexcept { return pipeline_id_; }
  std::uint64_t last_seq() const noexcept { return seq_; }

 private:
  struct Subscriber {
    SubscriptionId id;
    EventFilter filter;
    EventCallback callback;
  };
  void recompute_wanted();

  std::string pipeline_id_;
  std::vector<Subscriber> subscribers_;
  EventFilter wanted_;
  std::uint64_t seq_ = 0;
  SubscriptionId next_id_ = 1;
  bool delivering_ = false;
  std::vector<Subscriber> pending_additions_;
  std::vector<SubscriptionId> pending_removals_;
  std::deque<EventPayload> nested_;  // published during a delivery
};


}  // namespace sluice
