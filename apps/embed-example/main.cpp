// embed-example: a program that embeds the sluice engine.
//
// It builds a pipeline in code: a lazy record stream (filter, map, limit) as the source, a
// sink of its own that keeps a running nearest-pair search instead of writing files, and a
// subscriber of its own that reports failures and progress. Memory stays bounded: the sink
// keeps only its last few vectors.
//
//   embed-example MODEL_DIR INPUT.jsonl [LIMIT]

#include <cmath>
#include <cstdio>
#include <deque>
#include <string>

#include <fmt/format.h>

#include <sluice/omp_wait_policy.hpp>
#include <sluice/pipeline.hpp>
#include <sluice/record_stream.hpp>

namespace {

// Finds, among each record and the few before it, the most similar pair seen so far.
class NearestNeighbourSink : public sluice::Sink {
 public:
  void write(std::span<const sluice::EmbeddedRecord> records) override {
    for (const auto& r : records) {
      for (const auto& [line, v] : recent_) {
        double dot = 0;
        for (std::size_t i = 0; i < v.size(); ++i) dot += double(v[i]) * r.embedding[i];
        if (dot > best_) {
          best_ = dot;
          best_pair_ = {line, r.line};
        }
      }
      recent_.emplace_back(r.line, r.embedding);
      if (recent_.size() > kWindow) recent_.pop_front();
      ++count_;
    }
  }
  void finish() override {
    fmt::print("embedded {} records; most similar neighbours: lines {} and {} (cosine {:.4f})\n", count_,
               best_pair_.first, best_pair_.second, best_);
  }

 private:
  static constexpr std::size_t kWindow = 8;
  std::deque<std::pair<std::uint64_t, std::vector<float>>> recent_;
  double best_ = -2;
  std::pair<std::uint64_t, std::uint64_t> best_pair_{0, 0};
  std::uint64_t count_ = 0;
};

}  // namespace

// libtorch's OpenMP threads wait passively, as in pipeline-run (sluice/omp_wait_policy.hpp).
SLUICE_PASSIVE_OMP_WAIT_AT_LOAD();

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: embed-example MODEL_DIR INPUT.jsonl [LIMIT]\n");
    return 2;
  }
  const std::size_t limit = argc > 3 ? std::stoul(argv[3]) : 1000;
  try {
    sluice::PipelineOptions options;
    options.model = argv[1];
    options.batch_size = 16;
    sluice::Pipeline pipeline(options);

    // Lazy: nothing is read until the pipeline asks for records.
    auto stream = sluice::RecordStream::from_jsonl(argv[2])
                      .filter([](const sluice::Record& r) { return r.json.size() < 100000; })
                      .map([](sluice::Record r) {
                        // Embed a prefixed copy of the text; the record itself stays as it was.
                        if (auto text = sluice::string_field(r, "text")) r.text = "passage: " + *text;
                        return r;
                      })
                      .limit(limit);
    pipeline.set_source(std::move(stream).into_source());
    pipeline.set_sink(std::make_unique<NearestNeighbourSink>());

    pipeline.subscribe(sluice::EventFilter::of<sluice::DocumentFailed, sluice::PipelineFinished>(),
                       [](const sluice::PipelineEvent& e) {
                         if (auto* f = std::get_if<sluice::DocumentFailed>(&e.payload)) {
                           fmt::print(stderr, "failed: {}\n", f->message);
                         } else if (auto* d = std::get_if<sluice::PipelineFinished>(&e.payload)) {
                           fmt::print(stderr, "{}: {} embedded, {} failed, {} tokens in {:.2f} s\n", sluice::to_string(d->summary.status),
                                      d->summary.completed, d->summary.failed, d->summary.tokens, d->summary.elapsed_s);
                         }
                       });
    auto summary = pipeline.run();
    return summary.status == sluice::RunStatus::completed ? 0 : 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
