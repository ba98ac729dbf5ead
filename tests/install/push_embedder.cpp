// Push style: a pipeline over a JSONL file, with a sink and a subscriber of its own.
//
//   push-embedder MODEL_DIR INPUT.jsonl
//
// Prints one line per record ("LINE DIM NORM", in input order, from the sink), one line per
// failed record ("failed LINE CODE", from the subscriber) and the summary.

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include <sluice/error.hpp>
#include <sluice/events.hpp>
#include <sluice/omp_wait_policy.hpp>
#include <sluice/pipeline.hpp>
#include <sluice/record_stream.hpp>
#include <sluice/sink.hpp>

SLUICE_PASSIVE_OMP_WAIT_AT_LOAD();

namespace {

class PrintingSink : public sluice::Sink {
 public:
  void write(std::span<const sluice::EmbeddedRecord> records) override {
    for (const auto& r : records) {
      double norm = 0;
      for (float x : r.embedding) norm += double(x) * x;
      std::printf("%llu %zu %.4f\n", static_cast<unsigned long long>(r.line), r.embedding.size(), std::sqrt(norm));
    }
  }
  void finish() override { std::printf("sink finished\n"); }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: push-embedder MODEL_DIR INPUT.jsonl\n");
    return 2;
  }
  try {
    sluice::PipelineOptions options;
    options.model = argv[1];
    options.on_error = sluice::OnError::skip;
    options.batch_size = 4;
    sluice::Pipeline pipeline(options);
    pipeline.set_source(sluice::RecordStream::from_jsonl(argv[2]).into_source());
    pipeline.set_sink(std::make_unique<PrintingSink>());
    pipeline.subscribe(sluice::EventFilter::of<sluice::DocumentFailed>(), [](const sluice::PipelineEvent& e) {
      const auto& f = std::get<sluice::DocumentFailed>(e.payload);
      std::printf("failed %llu %s\n", static_cast<unsigned long long>(f.location.line),
                  std::string(sluice::error_name(f.code)).c_str());
    });
    const sluice::RunSummary summary = pipeline.run();
    std::printf("summary %s %llu %llu\n", std::string(sluice::to_string(summary.status)).c_str(), static_cast<unsigned long long>(summary.completed),
                static_cast<unsigned long long>(summary.failed));
    return summary.status == sluice::RunStatus::completed ? 0 : 1;
  } catch (const sluice::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
