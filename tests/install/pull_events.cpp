// Pull style: a generated source, lazy record-stream operators, events read with EventStream.
//
//   pull-events MODEL_DIR COUNT
//
// Generates COUNT records in code, keeps the even ones, prefixes their text, embeds at most
// COUNT / 4 of them, and prints each event's type in order, then what the sink saw.

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sluice/error.hpp>
#include <sluice/event_stream.hpp>
#include <sluice/events.hpp>
#include <sluice/omp_wait_policy.hpp>
#include <sluice/pipeline.hpp>
#include <sluice/record.hpp>
#include <sluice/record_stream.hpp>
#include <sluice/sink.hpp>

SLUICE_PASSIVE_OMP_WAIT_AT_LOAD();

namespace {

// Keeps what it is given; read from main() once the stream has ended (the stream's thread is
// joined by then).
class KeepingSink : public sluice::Sink {
 public:
  explicit KeepingSink(std::vector<std::string>* texts) : texts_(texts) {}
  void write(std::span<const sluice::EmbeddedRecord> records) override {
    for (const auto& r : records) texts_->push_back(r.json + " dim=" + std::to_string(r.embedding.size()));
  }

 private:
  std::vector<std::string>* texts_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: pull-events MODEL_DIR COUNT\n");
    return 2;
  }
  const std::uint64_t count = std::stoull(argv[2]);
  std::vector<std::string> seen;
  try {
    sluice::PipelineOptions options;
    options.model = argv[1];
    auto pipeline = std::make_unique<sluice::Pipeline>(options);

    std::uint64_t next = 0;
    auto generated = sluice::RecordStream([&next, count]() -> std::optional<sluice::Record> {
      if (next == count) return std::nullopt;
      sluice::Record r;
      r.line = ++next;
      r.json = "{\"n\":" + std::to_string(r.line) + "}";
      r.text = "record number " + std::to_string(r.line);
      return r;
    });
    auto stream = std::move(generated)
                      .filter([](const sluice::Record& r) { return r.line % 2 == 0; })
                      .map([](sluice::Record r) {
                        r.text = "passage: " + r.text.value_or("");
                        return r;
                      })
                      .limit(count / 4);
    pipeline->set_source(std::move(stream).into_source());
    pipeline->set_sink(std::make_unique<KeepingSink>(&seen));

    sluice::EventStream events(std::move(pipeline), sluice::EventFilter::all(), 16);
    for (const sluice::PipelineEvent& e : events) {
      std::printf("event %llu %s\n", static_cast<unsigned long long>(e.seq),
                  std::string(sluice::event_type(e.payload)).c_str());
    }
  } catch (const sluice::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  for (const auto& s : seen) std::printf("sink %s\n", s.c_str());
  return 0;
}
