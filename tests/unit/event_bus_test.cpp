#include <doctest/doctest.h>

#include "engine/event_bus.hpp"

using namespace sluice;

TEST_CASE("EventBus stamps envelopes and delivers only wanted kinds") {
  EventBus bus("p1");
  std::vector<PipelineEvent> all, failures;
  bus.subscribe(EventFilter::all(), [&](const PipelineEvent& e) { all.push_back(e); });
  CHECK(bus.wants<DocumentFailed>());
  bus.subscribe(EventFilter::of<DocumentFailed>(), [&](const PipelineEvent& e) { failures.push_back(e); });
  bus.publish(DocumentStarted{0, {"f", 1, 0}});
  bus.publish(DocumentFailed{0, {"f", 1, 0}, ErrorCode::invalid_json, "f:1: invalid JSON", "", false, 1});
  REQUIRE(all.size() == 2);
  CHECK(all[0].seq == 1);
  CHECK(all[1].seq == 2);
  CHECK(all[0].pipeline_id == "p1");
  CHECK(all[0].timestamp > 1.6e9);
  REQUIRE(failures.size() == 1);
  CHECK(failures[0].seq == 2);
}

TEST_CASE("a bus nobody wants documents from reports that, so payloads are not built") {
  EventBus bus("p");
  CHECK_FALSE(bus.wants<DocumentCompleted>());
  auto id = bus.subscribe(EventFilter::without_documents(), [](const PipelineEvent&) {});
  CHECK_FALSE(bus.wants<DocumentCompleted>());
  CHECK(bus.wants<BatchProgress>());
  bus.unsubscribe(id);
  CHECK_FALSE(bus.wants<BatchProgress>());
}

TEST_CASE("subscribing and unsubscribing from inside a callback is safe") {
  EventBus bus("p");
  int late = 0, self_calls = 0;
  SubscriptionId self = 0;
  self = bus.subscribe(EventFilter::all(), [&](const PipelineEvent&) {
    ++self_calls;
    bus.unsubscribe(self);
    for (int i = 0; i < 100; ++i) bus.subscribe(EventFilter::all(), [&](const PipelineEvent&) { ++late; });
  });
  bus.publish(PipelineFinished{});
  CHECK(self_calls == 1);
  CHECK(late == 0);  // added during delivery: from the next event on
  bus.publish(PipelineFinished{});
  CHECK(self_calls == 1);
  CHECK(late == 100);
}

TEST_CASE("an event published from inside a callback is delivered after the one being delivered") {
  EventBus bus("p");
  std::vector<std::pair<std::uint64_t, std::string>> a, b;
  bus.subscribe(EventFilter::all(), [&](const PipelineEvent& e) {
    a.emplace_back(e.seq, std::string(event_type(e.payload)));
    if (std::holds_alternative<DocumentStarted>(e.payload)) bus.publish(FileStarted{"x.py", 1});
  });
  bus.subscribe(EventFilter::all(), [&](const PipelineEvent& e) { b.emplace_back(e.seq, std::string(event_type(e.payload))); });
  bus.publish(DocumentStarted{0, {"f", 1, 0}});
  bus.publish(DocumentStarted{1, {"f", 2, 0}});
  const std::vector<std::pair<std::uint64_t, std::string>> want = {
      {1, "document_started"}, {2, "file_started"}, {3, "document_started"}, {4, "file_started"}};
  CHECK(a == want);
  CHECK(b == want);  // the second subscriber sees the first event before the nested one
}
