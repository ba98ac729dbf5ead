#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "engine/checkpoint.hpp"

using namespace sluice;

TEST_CASE("checkpoint JSON round-trips") {
  CheckpointState s;
  s.input = "in \"quoted\".jsonl";
  s.input_size = 1ull << 40;
  s.input_offset = 123456789;
  s.input_line = 1000;
  s.records_done = 999;
  s.output = "out.jsonl";
  s.output_offset = 42;
  s.dead_letter = "dead.jsonl";
  s.dead_letter_offset = 7;
  s.completed = 990;
  s.failed = 9;
  s.tokens = 18446744073709551615ull;
  s.truncated = 3;
  s.input_position = "123456789 1000 0123456789abcdef";
  s.output_hash = "fedcba9876543210";
  s.dead_letter_hash = "";
  s.fingerprint = "abc";
  s.finished = true;
  auto r = checkpoint_from_json(checkpoint_to_json(s));
  REQUIRE(r.ok());
  CHECK(r.value() == s);
}

TEST_CASE("checkpoint files are written whole and replace the old one") {
  auto dir = std::filesystem::temp_directory_path() / ("sluice-cp-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto path = (dir / "cp.json").string();
  CheckpointState a;
  a.records_done = 1;
  CHECK(write_checkpoint_file(path, a).empty());
  CheckpointState b;
  b.records_done = 2;
  CHECK(write_checkpoint_file(path, b).empty());
  CHECK(read_checkpoint_file(path).records_done == 2);
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  // Its size does not grow with the run.
  CHECK(std::filesystem::file_size(path) < 512);
  CHECK(write_checkpoint_file((dir / "no-such-dir" / "cp.json").string(), a).find("cannot write checkpoint") !=
        std::string::npos);
  { std::ofstream(path) << "{\"version\":2}"; }
  CHECK_THROWS_AS(read_checkpoint_file(path), Error);
  // A checkpoint of another version is refused with a message that says so.
  std::string text = checkpoint_to_json(a);
  text.replace(text.find("\"version\":3"), 11, "\"version\":1");
  auto old = checkpoint_from_json(text);
  REQUIRE_FALSE(old.ok());
  CHECK(old.error().message.find("version 1 is not supported") != std::string::npos);
  // Version 2 (the input was a JSONL file; its hash, not a position) is read as the JSONL
  // source's position.
  const std::string v2 =
      R"({"version":2,"input":"in.jsonl","input_size":1000,"input_offset":500,"input_line":10,"records_done":9,)"
      R"("output":"out.jsonl","output_offset":4321,"dead_letter":"","dead_letter_offset":0,"completed":8,"failed":1,)"
      R"("tokens":99,"truncated":0,"input_hash":"0123456789abcdef","output_hash":"fedcba9876543210",)"
      R"("dead_letter_hash":"","output_position":"","fingerprint":"f","finished":false})";
  auto converted = checkpoint_from_json(v2);
  REQUIRE(converted.ok());
  CHECK(converted.value().input_position == "500 10 0123456789abcdef");
  CHECK(converted.value().version == CheckpointState::kVersion);
  std::filesystem::remove_all(dir);
}
