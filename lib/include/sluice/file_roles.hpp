#pragma once
/// Files a run reads and writes, and the check that no two of them are one file: a run whose
/// output is its input, or whose checkpoint is its event log, would destroy what it reads or
/// mix two streams in one file. Thread: any.

#include <string>
#include <vector>

namespace sluice {

/// One file of a run. `role` names it in messages ("input", "output", "dead-letter file",
/// "checkpoint", "event log"); `path` "-" stands for the standard stream `standard_fd`
/// (0 for input, 1 for output).
struct FileRole {
  std::string role;
  std::string path;
  int standard_fd = -1;
};

/// Throws sluice::Error(invalid_argument), naming both roles and paths, when two of `roles`
/// are the same file: existing files are compared by device and inode (so `./in.jsonl`, a
/// symbolic link and a hard link are all the input), files not created yet by their absolute,
/// normalised path, and a standard stream by the file it is connected to (a regular file
/// only: a pipe or terminal is no file to destroy). Empty paths are skipped.
void check_distinct_files(const std::vector<FileRole>& roles);

}  // namespace sluice
