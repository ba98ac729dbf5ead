#include <sluice/validate.hpp>

#include <fmt/format.h>

#include "io/jsonl_input.hpp"
#include "io/record_parser.hpp"

namespace sluice {

ValidationSummary validate_jsonl(const std::string& path, const ValidationOptions& options,
                                 const std::function<bool(const InputLocation&, const ErrorInfo&)>& on_invalid) {
  return scan_jsonl(path, options, [&](const ScannedRecord& r) { return !r.error || on_invalid(r.where, *r.error); });
}

ValidationSummary scan_jsonl(const std::string& path, const ValidationOptions& options,
                             const std::function<bool(const ScannedRecord&)>& on_record) {
  JsonlInput input(path, options.max_record_bytes, options.read_chunk_bytes == 0 ? 1u << 20 : options.read_chunk_bytes);
  ValidationSummary summary;
  RecordParser parser(options.text_field, options.output_field);
  parser.set_allow_empty_text(options.allow_empty_text);
  bool keep_going = true;
  auto on_line = [&](const Line& line) {
    if (!keep_going) return;
    ++summary.records;
    InputLocation where{input.name(), line.number, line.offset};
    if (line.too_long) {
      ++summary.invalid;
      const ErrorInfo error{ErrorCode::record_too_large,
                            fmt::format("record is {} bytes, more than the limit of {} (raise it with --max-record-bytes)",
                                        line.length, options.max_record_bytes),
                            {},
                            {}};
      keep_going = on_record(ScannedRecord{where, line.bytes, nullptr, 0, false, &error});
      return;
    }
    auto r = parser.parse(line.bytes);
    if (!r) {
      ++summary.invalid;
      keep_going = on_record(ScannedRecord{where, line.bytes, nullptr, 0, false, &r.error()});
      return;
    }
    const ParsedRecord& rec = r.value();
    keep_going = on_record(ScannedRecord{where, line.bytes, &rec.text, rec.prefix_length, rec.empty_object, nullptr});
  };
  while (keep_going && input.read(on_line)) {
    if (options.on_progress) options.on_progress(input.offset(), input.size());
  }
  summary.bytes = input.offset();
  return summary;
}

}  // namespace sluice
