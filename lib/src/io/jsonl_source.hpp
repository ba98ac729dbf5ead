#pragma once
// The JSONL file source (make_jsonl_source() in sluice/source.hpp) and the form of its
// positions, which a checkpoint of an older version is converted to.

#include <cstdint>
#include <string>

namespace sluice {

/// A JSONL source's Record::position: resume at byte `offset`, which begins line `line` + 1;
/// `hash_hex` is the ContentHash of the bytes before `offset`.
std::string jsonl_position(std::uint64_t offset, std::uint64_t line, const std::string& hash_hex);

}  // namespace sluice
