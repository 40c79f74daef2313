// SQLite backend of the completion cache (frugal/completion_cache.hpp): one database file in WAL
// mode, so several threads (one serialised connection per cache object) and several processes
// (SQLite's file locks, waited on through a busy timeout) can read and write it at once.
//
// Table entries(key BLOB PRIMARY KEY, scope BLOB, record BLOB, embedding BLOB, n_bytes, created,
// last_used): the full key is the primary key, so a lookup can only find its own request.
// Limits: entries older than ttl_seconds are invisible and deleted at the next store; after each
// store the least recently used entries are deleted until the total record bytes are within
// max_bytes and the count within max_entries (0: no limit).
// Damage: a file that is not a database, a truncated one (checked with PRAGMA quick_check when it
// is opened) or a damaged record throws minigpt::error naming the file; nothing is ever guessed.
// Link: programs that include this header link SQLite (CMake target minigpt::sqlite).
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <mutex>

#include "minigpt/frugal/completion_cache.hpp"

namespace minigpt::frugal {

struct sqlite_cache_options {
    std::int64_t max_bytes = 0;       // 0: unlimited
    std::int64_t max_entries = 0;     // 0: unlimited
    double ttl_seconds = 0;           // 0: entries never expire
    bool verify_on_open = true;       // PRAGMA quick_check (reads every page once)
    int busy_timeout_ms = 10000;      // how long to wait for another process's write lock
};

class sqlite_cache final : public cache_backend {
public:
    explicit sqlite_cache(std::string path, sqlite_cache_options options = {}) : path_(std::move(path)), options_(options) {
        const int rc = sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
        if (rc != SQLITE_OK) {
            const std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
            sqlite3_close(db_);
            db_ = nullptr;
            throw io_error(path_ + ": cannot open the completion cache: " + msg);
        }
        try {
            sqlite3_busy_timeout(db_, options_.busy_timeout_ms);
            exec("PRAGMA journal_mode=WAL", "setting WAL mode");
            exec("PRAGMA synchronous=NORMAL", "setting synchronous mode");
            if (options_.verify_on_open) quick_check();
            exec("CREATE TABLE IF NOT EXISTS minigpt_completions ("
                 "key BLOB PRIMARY KEY, scope BLOB NOT NULL, record BLOB NOT NULL, embedding BLOB, "
                 "n_bytes INTEGER NOT NULL, created INTEGER NOT NULL, last_used INTEGER NOT NULL)",
                 "creating the table");
            exec("CREATE INDEX IF NOT EXISTS minigpt_completions_lru ON minigpt_completions(last_used)", "creating the index");
            exec("CREATE INDEX IF NOT EXISTS minigpt_completions_scope ON minigpt_completions(scope)", "creating the index");
        } catch (...) {
            sqlite3_close(db_);
            db_ = nullptr;
            throw;
        }
    }
    ~sqlite_cache() override {
        if (db_) sqlite3_close(db_);
    }
    sqlite_cache(const sqlite_cache&) = delete;
    sqlite_cache& operator=(const sqlite_cache&) = delete;

    std::optional<std::string> get(const completion_key& key) override {
        std::lock_guard<std::mutex> lock(mutex_);
        std::string record;
        {
            // Finished (finalised) before the update below: a read still open would make the update an
            // upgrade of a stale WAL snapshot, which fails at once when another process wrote meanwhile.
            statement st(*this, "SELECT record, created FROM minigpt_completions WHERE key = ?1", "looking up");
            st.blob(1, key.bytes);
            if (!st.step("looking up")) return std::nullopt;
            if (expired(sqlite3_column_int64(st.s, 1))) return std::nullopt;
            record = st.column_blob(0);
        }
        statement touch(*this, "UPDATE minigpt_completions SET last_used = ?1 WHERE key = ?2", "touching");
        touch.int64(1, now_us());
        touch.blob(2, key.bytes);
        touch.step("touching");
        return record;
    }

    void put(const completion_key& key, const std::string& record, std::span<const float> embedding) override {
        std::lock_guard<std::mutex> lock(mutex_);
        exec("BEGIN IMMEDIATE", "starting a write");
        try {
            const auto now = now_us();
            statement st(*this,
                         "INSERT OR REPLACE INTO minigpt_completions(key, scope, record, embedding, n_bytes, created, last_used) "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                         "storing");
            st.blob(1, key.bytes);
            st.blob(2, key.scope);
            st.blob(3, record);
            if (embedding.empty()) sqlite3_bind_null(st.s, 4);
            else st.blob(4, std::string_view(reinterpret_cast<const char*>(embedding.data()), embedding.size_bytes()));
            st.int64(5, static_cast<std::int64_t>(key.bytes.size() + record.size()));
            st.int64(6, now);
            st.step("storing");
            evict(now);
            exec("COMMIT", "committing");
        } catch (...) {
            sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
            throw;
        }
    }

    std::vector<cache_candidate> scope_candidates(const std::string& scope) override {
        std::lock_guard<std::mutex> lock(mutex_);
        statement st(*this, "SELECT record, embedding, created FROM minigpt_completions WHERE scope = ?1 AND embedding IS NOT NULL",
                     "scanning");
        st.blob(1, scope);
        std::vector<cache_candidate> out;
        while (st.step("scanning")) {
            if (expired(sqlite3_column_int64(st.s, 2))) continue;
            cache_candidate c;
            c.record = st.column_blob(0);
            const std::string e = st.column_blob(1);
            if (e.size() % sizeof(float) != 0) throw format_error(path_, 0, "an entry's embedding is " + std::to_string(e.size()) + " bytes, not whole floats");
            c.embedding.resize(e.size() / sizeof(float));
            if (!e.empty()) std::memcpy(c.embedding.data(), e.data(), e.size());  // an empty blob: data() is null, and memcpy's pointers must not be
            out.push_back(std::move(c));
        }
        return out;
    }

    std::string name() const override { return path_; }

    // Entries and record bytes held now (expired ones included until the next store).
    std::pair<std::int64_t, std::int64_t> size() {
        std::lock_guard<std::mutex> lock(mutex_);
        statement st(*this, "SELECT COUNT(*), COALESCE(SUM(n_bytes), 0) FROM minigpt_completions", "counting");
        st.step("counting");
        return {sqlite3_column_int64(st.s, 0), sqlite3_column_int64(st.s, 1)};
    }

private:
    struct statement {
        sqlite3_stmt* s = nullptr;
        sqlite_cache& owner;
        statement(sqlite_cache& o, const char* sql, const char* what) : owner(o) {
            if (sqlite3_prepare_v2(o.db_, sql, -1, &s, nullptr) != SQLITE_OK) o.fail(what);
        }
        ~statement() { sqlite3_finalize(s); }
        void blob(int i, std::string_view b) { sqlite3_bind_blob64(s, i, b.data(), b.size(), SQLITE_TRANSIENT); }
        void int64(int i, std::int64_t v) { sqlite3_bind_int64(s, i, v); }
        bool step(const char* what) {
            const int rc = sqlite3_step(s);
            if (rc == SQLITE_ROW) return true;
            if (rc == SQLITE_DONE) return false;
            owner.fail(what);
        }
        std::string column_blob(int i) {
            const void* p = sqlite3_column_blob(s, i);
            const int n = sqlite3_column_bytes(s, i);
            return p && n > 0 ? std::string(static_cast<const char*>(p), static_cast<std::size_t>(n)) : std::string();
        }
    };

    [[noreturn]] void fail(const char* what) const {
        throw error(path_ + ": completion cache error while " + what + ": " + sqlite3_errmsg(db_) +
                    " (the file is damaged or not a minigpt cache; delete it to start afresh)");
    }
    void exec(const char* sql, const char* what) {
        char* msg = nullptr;
        if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
            const std::string m = msg ? msg : sqlite3_errmsg(db_);
            sqlite3_free(msg);
            throw error(path_ + ": completion cache error while " + what + ": " + m +
                        " (the file is damaged or not a minigpt cache; delete it to start afresh)");
        }
    }
    void quick_check() {
        statement st(*this, "PRAGMA quick_check", "checking the file");
        std::string problems;
        while (st.step("checking the file")) {
            const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(st.s, 0));
            const std::string line = t ? t : "";
            if (line != "ok") problems += (problems.empty() ? "" : "; ") + line;
        }
        if (!problems.empty()) throw error(path_ + ": completion cache is damaged: " + problems.substr(0, 300));
    }
    static std::int64_t now_us() {
        return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    }
    bool expired(std::int64_t created) const { return options_.ttl_seconds > 0 && static_cast<double>(now_us() - created) > options_.ttl_seconds * 1e6; }

    void evict(std::int64_t now) {
        if (options_.ttl_seconds > 0) {
            statement st(*this, "DELETE FROM minigpt_completions WHERE created < ?1", "expiring");
            st.int64(1, now - static_cast<std::int64_t>(options_.ttl_seconds * 1e6));
            st.step("expiring");
        }
        if (options_.max_entries > 0) {
            statement st(*this,
                         "DELETE FROM minigpt_completions WHERE key IN (SELECT key FROM minigpt_completions ORDER BY last_used DESC "
                         "LIMIT -1 OFFSET ?1)",
                         "evicting");
            st.int64(1, options_.max_entries);
            st.step("evicting");
        }
        if (options_.max_bytes > 0) {
            // Keep the most recently used entries whose running total fits; delete the rest.
            statement sel(*this, "SELECT key, n_bytes FROM minigpt_completions ORDER BY last_used DESC", "evicting");
            std::int64_t total = 0;
            std::vector<std::string> drop;
            while (sel.step("evicting")) {
                total += sqlite3_column_int64(sel.s, 1);
                if (total > options_.max_bytes) drop.push_back(sel.column_blob(0));
            }
            for (const auto& k : drop) {
                statement del(*this, "DELETE FROM minigpt_completions WHERE key = ?1", "evicting");
                del.blob(1, k);
                del.step("evicting");
            }
        }
    }

    std::string path_;
    sqlite_cache_options options_;
    sqlite3* db_ = nullptr;
    std::mutex mutex_;
};

}  // namespace minigpt::frugal
