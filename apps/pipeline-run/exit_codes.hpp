#pragma once
// pipeline-run's exit codes (docs/cli.md lists them).

namespace pipeline_run {

inline constexpr int kExitOk = 0;             // every record embedded (or valid, for validate)
inline constexpr int kExitFailure = 1;        // the run failed: I/O error, model error, bad model folder
inline constexpr int kExitUsage = 2;          // bad command line
inline constexpr int kExitInvalidInput = 3;   // bad records: validation found some (nothing was embedded), or --on-error
                                              // fail met one, or more than --max-errors failed
inline constexpr int kExitRecordsFailed = 4;  // finished, but some records failed (--on-error skip)
inline constexpr int kExitInterrupted = 130;  // stopped by SIGINT/SIGTERM after draining and checkpointing

}  // namespace pipeline_run
