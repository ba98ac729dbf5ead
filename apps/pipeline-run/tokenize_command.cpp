#include "tokenize_command.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <sluice/error.hpp>
#include <sluice/file_roles.hpp>
#include <sluice/model.hpp>
#include <sluice/tokenizer.hpp>
#include <sluice/validate.hpp>

#include "exit_codes.hpp"

namespace pipeline_run {

namespace {

// Token counts: exact totals and a log2 histogram (bucket b holds lengths in (2^(b-1), 2^b]).
struct LengthStats {
  std::uint64_t records = 0;
  std::uint64_t tokens = 0;
  std::uint64_t longest = 0;
  std::uint64_t over_limit = 0;   // records longer than the model's maximum
  std::uint64_t tokens_cut = 0;   // tokens those records lose to truncation
  std::vector<std::uint64_t> buckets = std::vector<std::uint64_t>(40, 0);
  // Exact counts per length: at most one entry per distinct length, and a record has at most
  // --max-record-bytes tokens, so this stays small whatever the input size.
  std::map<std::uint64_t, std::uint64_t> per_length;

  void add(std::uint64_t n, std::uint64_t limit) {
    ++records;
    tokens += n;
    longest = std::max(longest, n);
    if (limit > 0 && n > limit) {
      ++over_limit;
      tokens_cut += n - limit;
    }
    std::size_t b = 0;
    while ((std::uint64_t{1} << b) < n) ++b;
    ++buckets[std::min<std::size_t>(b, buckets.size() - 1)];
    ++per_length[n];
  }

  // The smallest length that at least a fraction q of the records do not exceed.
  std::uint64_t quantile(double q) const {
    std::uint64_t seen = 0;
    for (const auto& [length, count] : per_length) {
      seen += count;
      if (static_cast<double>(seen) >= q * static_cast<double>(records)) return length;
    }
    return longest;
  }
};

void print_stats(std::FILE* f, const LengthStats& s, std::uint64_t invalid, std::uint32_t limit) {
  fmt::print(f, "records       {}", s.records);
  if (invalid > 0) fmt::print(f, " (and {} invalid, not counted)", invalid);
  fmt::print(f, "\n");
  if (s.records == 0) return;
  fmt::print(f, "tokens        {} (special tokens included), {:.1f} per record, longest {}\n", s.tokens,
             static_cast<double>(s.tokens) / static_cast<double>(s.records), s.longest);
  if (limit > 0) {
    fmt::print(f, "model limit   {} tokens: {} records longer ({:.1f}%), truncation would drop {} tokens ({:.1f}%)\n",
               limit, s.over_limit, 100.0 * static_cast<double>(s.over_limit) / static_cast<double>(s.records),
               s.tokens_cut, 100.0 * static_cast<double>(s.tokens_cut) / static_cast<double>(s.tokens));
    fmt::print(f, "embedded      {} tokens with --long-input truncate\n", s.tokens - s.tokens_cut);
  }
  fmt::print(f, "quantiles     50% <= {}, 90% <= {}, 99% <= {} tokens\n", s.quantile(0.5), s.quantile(0.9),
             s.quantile(0.99));
  fmt::print(f, "tokens per record:\n");
  std::size_t first = 0, last = 0;
  for (std::size_t b = 0; b < s.buckets.size(); ++b) {
    if (s.buckets[b] == 0) continue;
    if (last == 0 && first == 0 && s.buckets[0] == 0) first = b;
    last = b;
  }
  const std::uint64_t peak = *std::max_element(s.buckets.begin(), s.buckets.end());
  for (std::size_t b = first; b <= last; ++b) {
    const std::uint64_t lo = b == 0 ? 0 : (std::uint64_t{1} << (b - 1)) + 1;
    const std::uint64_t hi = std::uint64_t{1} << b;
    const auto bar = static_cast<std::size_t>(40.0 * static_cast<double>(s.buckets[b]) / static_cast<double>(peak) + 0.5);
    fmt::print(f, "  {:>6}-{:<6} {:<40} {:>10} {:5.1f}%\n", lo, hi, std::string(bar, '#'), s.buckets[b],
               100.0 * static_cast<double>(s.buckets[b]) / static_cast<double>(s.records));
  }
}

}  // namespace

int run_tokenize(const TokenizeArgs& args) {
  // The file's own settings: its truncation, if any, is kept; the model's limit is only reported.
  if (args.output_field.find_first_of("\"\\") != std::string::npos ||
      std::any_of(args.output_field.begin(), args.output_field.end(), [](char c) { return (unsigned char)c < 0x20; })) {
    throw sluice::Error(sluice::ErrorCode::invalid_argument, "--output-field: quotes, backslashes and control characters are not allowed");
  }
  auto tokenizer = sluice::Tokenizer::from_file(args.model / "tokenizer.json");
  std::uint32_t limit = 0;
  if (args.stats) limit = sluice::Model::load(args.model)->info().max_tokens;
  const bool special = !args.no_special_tokens;

  // The output must not be the input (opening it would empty what is to be read).
  sluice::check_distinct_files({{"input", args.input, STDIN_FILENO}, {"output", args.output, STDOUT_FILENO}});
  std::FILE* out = nullptr;
  bool owned = false;
  if (!args.output.empty()) {
    if (args.output == "-") {
      out = stdout;
    } else {
      out = std::fopen(args.output.c_str(), "wb");
      if (!out) {
        throw sluice::Error(sluice::ErrorCode::io_error, fmt::format("{}: cannot open for writing", args.output));
      }
      owned = true;
    }
  }
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(owned ? out : nullptr, &std::fclose);

  sluice::ValidationOptions vo;
  vo.text_field = args.text_field;
  vo.output_field = args.output_field;
  vo.max_record_bytes = args.max_record_bytes;
  vo.allow_empty_text = true;
  LengthStats stats;
  std::string line;
  std::string key;
  sluice::ValidationSummary summary;
  summary = sluice::scan_jsonl(args.input, vo, [&](const sluice::ScannedRecord& r) {
    if (r.error) {
      fmt::print(stderr, "{}:{}: {}\n", r.where.file, r.where.line, r.error->message);
      return true;
    }
    if (!out) {
      // Only counted: the tokens are not kept (a long text is counted a segment at a time).
      stats.add(tokenizer->count_tokens(*r.text, special), limit);
      return true;
    }
    sluice::Encoding enc = tokenizer->encode(*r.text, special);
    // A long text truncated on the right is tokenised only as far as the kept tokens need:
    // its full length is then counted without keeping the tokens.
    stats.add(enc.length_is_lower_bound ? tokenizer->count_tokens(*r.text, special) : enc.untruncated_length, limit);
    line.assign(r.line.substr(0, r.prefix_length));
    if (!r.empty_object) line.push_back(',');
    line += fmt::format("\"{}\":[{}]}}\n", args.output_field, fmt::join(enc.ids, ","));
    if (std::fwrite(line.data(), 1, line.size(), out) != line.size()) {
      throw sluice::Error(sluice::ErrorCode::io_error, fmt::format("{}: write failed", args.output));
    }
    return true;
  });
  if (out && std::fflush(out) != 0) {
    throw sluice::Error(sluice::ErrorCode::io_error, fmt::format("{}: write failed", args.output));
  }
  if (args.stats) print_stats(args.output == "-" ? stderr : stdout, stats, summary.invalid, limit);
  if (summary.invalid > 0) {
    fmt::print(stderr, "{} of {} records are invalid and were left out\n", summary.invalid, summary.records);
    return kExitRecordsFailed;
  }
  return kExitOk;
}

}  // namespace pipeline_run
