#include <doctest/doctest.h>

#include <thread>

#include "engine/bounded_queue.hpp"

using sluice::BoundedQueue;

TEST_CASE("BoundedQueue bounds items and bytes") {
  BoundedQueue<int> q(3, 100);
  CHECK(q.try_push(1, 10));
  CHECK(q.try_push(2, 10));
  CHECK(q.try_push(3, 10));
  CHECK_FALSE(q.try_push(4, 10));  // items
  CHECK(q.try_pop() == 1);
  CHECK_FALSE(q.try_push(5, 90));  // bytes: 20 + 90 > 100
  CHECK(q.try_push(5, 80));
  BoundedQueue<int> heavy(3, 100);
  CHECK(heavy.try_push(1, 1000));  // an empty queue takes one oversized item
  CHECK_FALSE(heavy.try_push(2, 1));
}

TEST_CASE("a blocked producer wakes on pop and on close") {
  BoundedQueue<int> q(1);
  q.push(1);
  std::thread producer([&] { CHECK(q.push(2)); });
  CHECK(q.pop() == 1);
  producer.join();
  CHECK(q.pop() == 2);

  q.push(3);
  std::thread blocked([&] { CHECK_FALSE(q.push(4)); });
  q.close_and_clear();
  blocked.join();
  CHECK_FALSE(q.pop().has_value());
}

TEST_CASE("close lets consumers drain what is left, then end") {
  BoundedQueue<int> q(10);
  q.push(1);
  q.push(2);
  q.close();
  CHECK_FALSE(q.push(3));
  CHECK(q.pop() == 1);
  CHECK(q.pop() == 2);
  CHECK_FALSE(q.pop().has_value());
  CHECK_FALSE(q.pop_for(std::chrono::milliseconds(1)).has_value());
}
