#pragma once
// Checkpoint files: positions, not data. Written atomically (temporary file, fsync, rename).

#include <cstdint>
#include <string>

#include <sluice/error.hpp>

namespace sluice {

struct CheckpointState {
  // Version 3: the input's position is the source's (input_position), not a file's hash;
  // version 2 files are read (converted: their input was a JSONL file).
  static constexpr int kVersion = 3;
  int version = kVersion;
  std::string input;               // the source's name (a path)
  std::uint64_t input_size = 0;    // input size in bytes when the run began (0: unknown)
  std::uint64_t input_offset = 0;  // input bytes before the position (progress; 0: unknown)
  std::uint64_t input_line = 0;    // line of the last record before it
  std::uint64_t records_done = 0;  // records whose output is durable
  std::string output;
  std::uint64_t output_offset = 0;  // output bytes that are durable and belong to done records
  std::string dead_letter;
  std::uint64_t dead_letter_offset = 0;
  std::uint64_t completed = 0;
  std::uint64_t failed = 0;
  std::uint64_t tokens = 0;
  std::uint64_t truncated = 0;
  // The source's Record::position of the last record done, opaque (Source::resume()); empty
  // when none is done yet or the source gives none.
  std::string input_position;
  // ContentHash (io/content_hash.hpp) of the bytes before each offset, 16 hex digits; empty
  // where there is no file to read back (a program's own sink, standard output).
  std::string output_hash;
  std::string dead_letter_hash;
  // A program's own sink: where it stood (CommitResult::position), opaque; empty otherwise.
  std::string output_position;
  std::string fingerprint;  // model (by content), options
  bool finished = false;    // the run reached the end of its input

  bool operator==(const CheckpointState&) const = default;
};

std::string checkpoint_to_json(const CheckpointState& state);
Result<CheckpointState> checkpoint_from_json(std::string_view json);

/// Writes `state` to `path` atomically: `path`.tmp, fsync, rename, fsync of the folder.
/// Returns an empty string on success, else a message naming the path.
std::string write_checkpoint_file(const std::string& path, const CheckpointState& state);
/// Before a resumed run cuts `path` back to `offset` (the checkpoint's): throws sluice::Error
/// (invalid_argument) when the file is shorter, for it was changed since. Offset 0: nothing.
void check_resume_size(const std::string& path, std::uint64_t offset);

/// Reads a checkpoint; throws sluice::Error(io_error / invalid_argument) naming the path.
CheckpointState read_checkpoint_file(const std::string& path);

}  // namespace sluice
