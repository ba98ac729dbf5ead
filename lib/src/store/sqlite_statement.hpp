#pragma once
// A prepared SQLite statement (sqlite_store.cpp, code_store.cpp). Bound values are not copied:
// they must outlive the next step(). Thread: its connection's.

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "store_backend.hpp"

namespace sluice::store {

class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql.c_str(), static_cast<int>(sql.size()), &stmt_, nullptr) != SQLITE_OK) {
      throw StoreError(fmt::format("cannot prepare \"{}\": {}", sql.substr(0, 60), sqlite3_errmsg(db)), false);
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& text(int i, std::string_view v) {
    sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
    return *this;
  }
  Statement& blob(int i, std::string_view v) {
    sqlite3_bind_blob64(stmt_, i, v.data(), v.size(), SQLITE_STATIC);
    return *this;
  }
  Statement& integer(int i, std::int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  int step() { return sqlite3_step(stmt_); }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::int64_t column_int(int i) { return sqlite3_column_int64(stmt_, i); }
  std::string_view column_text(int i) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, i));
    return p ? std::string_view(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, i))) : std::string_view();
  }
  std::string_view column_blob(int i) {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, i));
    return p ? std::string_view(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, i))) : std::string_view();
  }
  bool column_null(int i) { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }
  sqlite3_stmt* handle() { return stmt_; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

/// A lock another connection holds (the operation may succeed later).
inline bool sqlite_busy(int rc) {
  const int primary = rc & 0xFF;
  return primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

/// Throws StoreError "NAME: WHAT: message" unless `rc` is SQLITE_OK, SQLITE_DONE or SQLITE_ROW.
inline void sqlite_check(sqlite3* db, const std::string& name, int rc, const char* what) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return;
  throw StoreError(fmt::format("{}: {}: {}", name, what, sqlite3_errmsg(db)), sqlite_busy(rc));
}

/// Runs `sql` (one or more statements); throws StoreError "NAME: message".
inline void sqlite_exec(sqlite3* db, const std::string& name, const std::string& sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string message = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw StoreError(fmt::format("{}: {}", name, message), sqlite_busy(rc));
  }
}

/// sqlite_exec() for setup, before a run: failures are sluice::Error (io_error).
inline void sqlite_exec_setup(sqlite3* db, const std::string& name, const std::string& sql) {
  try {
    sqlite_exec(db, name, sql);
  } catch (const StoreError& e) {
    throw Error(ErrorCode::io_error, e.what());
  }
}

/// Opens the database at `path` (created when missing unless `read_only`) with extended result
/// codes and a 10 s busy timeout. Throws sluice::Error (io_error) "NAME: cannot open: ...".
inline sqlite3* sqlite_open(const std::string& path, const std::string& name, bool read_only) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db,
                                 read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    throw Error(ErrorCode::io_error, fmt::format("{}: cannot open: {}", name, message));
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, 10000);
  return db;
}

}  // namespace sluice::store
