// libFuzzer harness: completion-cache entries (frugal/completion_cache.hpp), as they come back from
// storage a program does not control. Byte 0 (mod 3) picks the mode (completion_cache_fixture.hpp):
//   record:      frugal::decode_record on the rest; an accepted record must encode back to exactly
//                the same bytes. Then completion_cache lookups (exact key, then the semantic scan with
//                an embedding function) through a backend that returns the rest as every stored record.
//   sqlite_row:  (built with SQLite) one row of a SQLite cache file (frugal/cache_sqlite.hpp) written
//                with the fuzzed record, embedding blob (any length, or NULL), scope (the request's or
//                not), record column type (BLOB or TEXT) and age, then the same lookups through it.
//   sqlite_file: (built with SQLite) the rest is a whole database file opened as the cache
//                (PRAGMA quick_check, table creation) and looked up.
// Seeds: records and rows under the fixed request's key and a small cache database (make_seeds.cpp).

#include "completion_cache_fixture.hpp"
#include "fuzz_common.hpp"
#include "minigpt/frugal/completion_cache.hpp"
#ifdef MINIGPT_HAVE_SQLITE
#include "minigpt/frugal/cache_sqlite.hpp"
#endif

using namespace minigpt;
using namespace minigpt::frugal;

namespace {

// Returns the fuzzed record for every key and scope.
class fuzzed_backend final : public cache_backend {
public:
    explicit fuzzed_backend(std::string record) : record_(std::move(record)) {}
    std::optional<std::string> get(const completion_key&) override { return record_; }
    void put(const completion_key&, const std::string&, std::span<const float>) override {}
    std::vector<cache_candidate> scope_candidates(const std::string&) override { return {{record_, {1.0f, 0.0f, 0.0f, 0.0f}}}; }
    std::string name() const override { return "fuzz"; }

private:
    std::string record_;
};

cache_options semantic_options() {
    cache_options o;
    o.embed = [](std::string_view) { return std::vector<float>{1.0f, 0.0f, 0.0f, 0.0f}; };
    o.semantic_threshold = 0.5;
    return o;
}

// An exact lookup of the fixed request, then a semantic one of a request with another prompt.
void lookups(completion_cache& cache) {
    fuzz::guarded("cache exact lookup", [&] { (void)cache.lookup(fuzz::fixed_cache_request(), "prompt text"); });
    completion_request other = fuzz::fixed_cache_request();
    other.prompt_tokens.push_back(3);
    fuzz::guarded("cache semantic lookup", [&] { (void)cache.lookup(other, "another prompt text"); });
}

void fuzz_record(std::string_view rest) {
    bool decoded = false;
    std::pair<std::string, completion> out;
    fuzz::guarded("decode_record", [&] {
        out = decode_record(rest, "fuzz record");
        decoded = true;
    });
    if (decoded) {
        completion_key k;
        k.bytes = out.first;
        fuzz::fuzz_check(encode_record(k, out.second) == rest, "an accepted record does not encode back to its bytes");
    }
    completion_cache cache(std::make_unique<fuzzed_backend>(std::string(rest)), semantic_options());
    lookups(cache);
}

#ifdef MINIGPT_HAVE_SQLITE

// One cache (through its API) and one raw connection (to write rows the API never would) on one file.
struct row_fixture {
    std::string path = fuzz::scratch_path("-rows.db");
    completion_cache* cache = nullptr;
    sqlite3* raw = nullptr;
    row_fixture() {
        fuzz::remove_sqlite_files(path);
        cache = new completion_cache(std::make_unique<sqlite_cache>(path, sqlite_cache_options{.ttl_seconds = 3600}), semantic_options());
        if (sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) std::abort();
    }
};

void fuzz_sqlite_row(std::string_view rest) {
    static row_fixture f;  // lives to the end of the process, as libFuzzer's inputs do
    if (rest.size() < 3) return;
    const auto flags = static_cast<std::uint8_t>(rest[0]);
    const std::size_t n_record = std::min<std::size_t>(static_cast<std::uint8_t>(rest[1]) | static_cast<std::size_t>(static_cast<std::uint8_t>(rest[2])) << 8,
                                                       rest.size() - 3);
    const std::string_view record = rest.substr(3, n_record), embedding = rest.substr(3 + n_record);
    const completion_key key = make_key(fuzz::fixed_cache_request());
    if (sqlite3_exec(f.raw, "DELETE FROM minigpt_completions", nullptr, nullptr, nullptr) != SQLITE_OK) std::abort();
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(f.raw,
                           "INSERT INTO minigpt_completions(key, scope, record, embedding, n_bytes, created, last_used) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                           -1, &st, nullptr) != SQLITE_OK)
        std::abort();
    sqlite3_bind_blob64(st, 1, key.bytes.data(), key.bytes.size(), SQLITE_TRANSIENT);
    const std::string scope = (flags & 1) ? key.scope : std::string(embedding.substr(0, 16));
    sqlite3_bind_blob64(st, 2, scope.data(), scope.size(), SQLITE_TRANSIENT);
    if (flags & 2) sqlite3_bind_text64(st, 3, record.data(), record.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    else sqlite3_bind_blob64(st, 3, record.data(), record.size(), SQLITE_TRANSIENT);
    if (flags & 4) sqlite3_bind_null(st, 4);
    else sqlite3_bind_blob64(st, 4, embedding.data(), embedding.size(), SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, static_cast<std::int64_t>(record.size()));
    const auto now = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    sqlite3_bind_int64(st, 6, (flags & 8) ? 0 : now);  // 0: older than the TTL, so invisible
    const int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) std::abort();
    lookups(*f.cache);
}

void fuzz_sqlite_file(std::string_view rest) {
    const std::string& path = fuzz::write_scratch(reinterpret_cast<const std::uint8_t*>(rest.data()), rest.size(), "-file.db");
    fuzz::remove_sqlite_companions(path);  // the last input's
    std::unique_ptr<sqlite_cache> backend;
    fuzz::guarded("sqlite cache open", [&] { backend = std::make_unique<sqlite_cache>(path, sqlite_cache_options{.busy_timeout_ms = 0}); });
    if (!backend) return;
    completion_cache cache(std::move(backend), semantic_options());
    lookups(cache);
}
#endif

}  // namespace

MINIGPT_FUZZ_TARGET(completion_cache) {
    if (size < 1) return 0;
    const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    switch (static_cast<fuzz::cache_mode>(data[0] % 3)) {
        case fuzz::cache_mode::record: fuzz_record(rest); break;
#ifdef MINIGPT_HAVE_SQLITE
        case fuzz::cache_mode::sqlite_row: fuzz_sqlite_row(rest); break;
        case fuzz::cache_mode::sqlite_file: fuzz_sqlite_file(rest); break;
#else
        default: break;
#endif
    }
    return 0;
}
