#include <sluice/file_roles.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <optional>

#include <fmt/format.h>

#include <sluice/error.hpp>

namespace sluice {
namespace {

struct Identity {
  bool by_inode = false;
  dev_t dev = 0;
  ino_t ino = 0;
  std::string path;  // when the file does not exist yet

  bool operator==(const Identity& o) const {
    return by_inode == o.by_inode && (by_inode ? dev == o.dev && ino == o.ino : path == o.path);
  }
};

std::optional<Identity> identify(const FileRole& r) {
  struct stat st {};
  if (r.path == "-") {
    if (r.standard_fd < 0 || fstat(r.standard_fd, &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
    return Identity{true, st.st_dev, st.st_ino, {}};
  }
  if (::stat(r.path.c_str(), &st) == 0) return Identity{true, st.st_dev, st.st_ino, {}};
  std::error_code ec;
  std::filesystem::path p = std::filesystem::weakly_canonical(std::filesystem::absolute(r.path, ec), ec);
  if (ec) p = std::filesystem::absolute(r.path, ec).lexically_normal();
  return Identity{false, 0, 0, p.string()};
}

std::string describe(const FileRole& r) {
  if (r.path == "-") return fmt::format("the {} (standard {})", r.role, r.standard_fd == 0 ? "input" : "output");
  return fmt::format("the {} {}", r.role, r.path);
}

}  // namespace

void check_distinct_files(const std::vector<FileRole>& roles) {
  std::vector<std::pair<const FileRole*, Identity>> seen;
  for (const FileRole& r : roles) {
    if (r.path.empty()) continue;
    std::optional<Identity> id = identify(r);
    if (!id) continue;
    for (const auto& [other, other_id] : seen) {
      if (other_id == *id) {
        throw Error(ErrorCode::invalid_argument,
                    fmt::format("{} and {} are the same file: the run would {}; give each its own file",
                                describe(*other), describe(r),
                                other->role == "input" || r.role == "input" ? "overwrite what it reads"
                                                                            : "write two things into one file"));
      }
    }
    seen.emplace_back(&r, *id);
  }
}

}  // namespace sluice
