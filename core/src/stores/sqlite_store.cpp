#include <sqlite3.h>

#include <chrono>
#include <mutex>

#include "../detail/deleter.hpp"
#include "postroom/error.hpp"
#include "postroom/redact.hpp"
#include "postroom/stores/store.hpp"

namespace postroom::stores {

namespace {

using postroom::detail::Deleter;
using DbHandle = std::unique_ptr<sqlite3, Deleter<sqlite3_close_v2>>;
using StatementHandle = std::unique_ptr<sqlite3_stmt, Deleter<sqlite3_finalize>>;

// The one translation from SQLite result codes to postroom errors.
[[noreturn]] void throw_sqlite(sqlite3* db, int rc, std::string_view context) {
    std::string message = "SQLite " + std::string(context) + ": " +
                          (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)) + " (" +
                          sqlite3_errstr(rc) + ")";
    switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
            throw StorageError(message + "; another writer holds the database, retry later",
                               Retriable::yes, rc);
        case SQLITE_CANTOPEN:
        case SQLITE_PERM:
        case SQLITE_READONLY:
            throw ConfigurationError(message + "; check the path and its permissions", rc);
        case SQLITE_ERROR:
        case SQLITE_RANGE:
        case SQLITE_MISMATCH:
        case SQLITE_CONSTRAINT: throw StorageError(message, Retriable::no, rc);
        default: throw StorageError(message, Retriable::unknown, rc);
    }
}

void check(sqlite3* db, int rc, std::string_view context) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) throw_sqlite(db, rc, context);
}

int64_t now_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

bool is_valid_table_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > 63) return false;
    auto alpha = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    };
    if (!alpha(name[0])) return false;
    for (char c : name)
        if (!alpha(c) && !(c >= '0' && c <= '9')) return false;
    return true;
}

struct SqliteStore::Impl {
    std::string path;
    std::string table;  // validated; used quoted
    std::mutex mutex;   // one transaction at a time on this connection
    DbHandle db;

    StatementHandle prepare(std::string_view sql) {
        sqlite3_stmt* raw = nullptr;
        int rc =
            sqlite3_prepare_v2(db.get(), sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
        StatementHandle stmt(raw);
        check(db.get(), rc, "prepare '" + std::string(sql.substr(0, 80)) + "'");
        return stmt;
    }

    void exec(const std::string& sql, std::string_view context) {
        char* err = nullptr;
        int rc = sqlite3_exec(db.get(), sql.c_str(), nullptr, nullptr, &err);
        sqlite3_free(err);
        check(db.get(), rc, context);
    }

    void bind(sqlite3_stmt* stmt, const std::vector<SqlValue>& params) {
        for (std::size_t i = 0; i < params.size(); ++i) {
            int index = static_cast<int>(i) + 1;
            int rc = std::visit(
                [&](const auto& v) -> int {
                    using T = std::decay_t<decltype(v)>;
                    if constexpr (std::is_same_v<T, std::monostate>)
                        return sqlite3_bind_null(stmt, index);
                    else if constexpr (std::is_same_v<T, int64_t>)
                        return sqlite3_bind_int64(stmt, index, v);
                    else if constexpr (std::is_same_v<T, double>)
                        return sqlite3_bind_double(stmt, index, v);
                    else if constexpr (std::is_same_v<T, std::string>)
                        return sqlite3_bind_text(stmt, index, v.data(), static_cast<int>(v.size()),
                                                 SQLITE_TRANSIENT);
                    else
                        return sqlite3_bind_blob(stmt, index, v.bytes.data(),
                                                 static_cast<int>(v.bytes.size()),
                                                 SQLITE_TRANSIENT);
                },
                params[i]);
            check(db.get(), rc, "bind parameter " + std::to_string(index));
        }
    }

    SqlResult run(std::string_view sql, const std::vector<SqlValue>& params) {
        auto stmt = prepare(sql);
        bind(stmt.get(), params);
        SqlResult result;
        const int columns = sqlite3_column_count(stmt.get());
        for (int c = 0; c < columns; ++c)
            result.columns.emplace_back(sqlite3_column_name(stmt.get(), c));
        for (;;) {
            int rc = sqlite3_step(stmt.get());
            if (rc == SQLITE_DONE) break;
            if (rc != SQLITE_ROW) throw_sqlite(db.get(), rc, "execute");
            std::vector<SqlValue> row;
            row.reserve(static_cast<std::size_t>(columns));
            for (int c = 0; c < columns; ++c) {
                switch (sqlite3_column_type(stmt.get(), c)) {
                    case SQLITE_INTEGER:
                        row.emplace_back(int64_t{sqlite3_column_int64(stmt.get(), c)});
                        break;
                    case SQLITE_FLOAT:
                        row.emplace_back(sqlite3_column_double(stmt.get(), c));
                        break;
                    case SQLITE_TEXT:
                        row.emplace_back(std::string(
                            reinterpret_cast<const char*>(sqlite3_column_text(stmt.get(), c)),
                            static_cast<std::size_t>(sqlite3_column_bytes(stmt.get(), c))));
                        break;
                    case SQLITE_BLOB: {
                        auto* p = static_cast<const char*>(sqlite3_column_blob(stmt.get(), c));
                        row.emplace_back(Blob{std::string(
                            p ? p : "",
                            static_cast<std::size_t>(sqlite3_column_bytes(stmt.get(), c)))});
                        break;
                    }
                    default: row.emplace_back(std::monostate{});
                }
            }
            result.rows.push_back(std::move(row));
        }
        result.changes = sqlite3_changes64(db.get());
        return result;
    }

    std::string quoted_table() const { return "\"" + table + "\""; }
};

namespace {

class SqliteTransaction final : public Transaction {
public:
    explicit SqliteTransaction(std::shared_ptr<SqliteStore::Impl> impl)
        : impl_(std::move(impl)), lock_(impl_->mutex) {
        impl_->exec("BEGIN IMMEDIATE", "begin transaction");
        open_ = true;
    }
    ~SqliteTransaction() override { rollback(); }

    bool claim(std::string_view scope, std::string_view key) override {
        require_open();
        auto r = impl_->run("INSERT INTO " + impl_->quoted_table() +
                                " (scope, key, processed_at) VALUES (?, ?, ?) "
                                "ON CONFLICT (scope, key) DO NOTHING",
                            {std::string(scope), std::string(key), now_ms()});
        return r.changes == 1;
    }

    void unclaim(std::string_view scope, const std::vector<std::string>& keys) override {
        require_open();
        for (const auto& key : keys)
            impl_->run("DELETE FROM " + impl_->quoted_table() + " WHERE scope = ? AND key = ?",
                       {std::string(scope), key});
    }

    void savepoint() override {
        require_open();
        if (savepoint_) impl_->exec("RELEASE postroom_event", "release savepoint");
        impl_->exec("SAVEPOINT postroom_event", "savepoint");
        savepoint_ = true;
    }

    void rollback_to_savepoint() override {
        require_open();
        if (savepoint_) impl_->exec("ROLLBACK TO postroom_event", "rollback to savepoint");
    }

    void commit() override {
        require_open();
        open_ = false;  // a failed COMMIT leaves nothing to roll back but the transaction
        try {
            impl_->exec("COMMIT", "commit");
        } catch (...) {
            sqlite3_exec(impl_->db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
            lock_.unlock();
            throw;
        }
        lock_.unlock();  // the connection is free for the next transaction
    }

    void rollback() noexcept override {
        if (!open_) return;
        open_ = false;
        sqlite3_exec(impl_->db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
        lock_.unlock();
    }

    SqlResult execute(std::string_view sql, const std::vector<SqlValue>& params) override {
        require_open();
        return impl_->run(sql, params);
    }

private:
    void require_open() const {
        if (!open_) throw UsageError("the store transaction is already committed or rolled back");
    }
    std::shared_ptr<SqliteStore::Impl> impl_;
    std::unique_lock<std::mutex> lock_;
    bool open_ = false;
    bool savepoint_ = false;
};

}  // namespace

SqliteStore::SqliteStore(const std::string& path, const std::string& table,
                         std::chrono::milliseconds busy_timeout, bool create_table)
    : impl_(std::make_shared<Impl>()) {
    if (!is_valid_table_name(table))
        throw ConfigurationError("idempotency table name '" + table +
                                 "' is not allowed: use letters, digits and '_', starting with a "
                                 "letter or '_', at most 63 characters");
    impl_->path = path;
    impl_->table = table;
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &raw,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                             nullptr);
    impl_->db.reset(raw);
    if (rc != SQLITE_OK) throw_sqlite(raw, rc, "open '" + path + "'");
    sqlite3_busy_timeout(raw, static_cast<int>(busy_timeout.count()));
    if (path != ":memory:") impl_->exec("PRAGMA journal_mode=WAL", "enable WAL");
    impl_->exec("PRAGMA synchronous=FULL", "set synchronous");
    if (!create_table) return;
    impl_->exec("CREATE TABLE IF NOT EXISTS " + impl_->quoted_table() +
                    " (scope TEXT NOT NULL, key TEXT NOT NULL, processed_at INTEGER NOT NULL, "
                    "PRIMARY KEY (scope, key)) WITHOUT ROWID",
                "create table " + table);
    impl_->exec("CREATE INDEX IF NOT EXISTS \"" + table + "_processed_at\" ON " +
                    impl_->quoted_table() + " (processed_at)",
                "create index");
}

SqliteStore::~SqliteStore() = default;

std::unique_ptr<Transaction> SqliteStore::begin() {
    return std::make_unique<SqliteTransaction>(impl_);
}

bool SqliteStore::contains(std::string_view scope, std::string_view key) {
    std::lock_guard lock(impl_->mutex);
    auto r = impl_->run("SELECT 1 FROM " + impl_->quoted_table() + " WHERE scope = ? AND key = ?",
                        {std::string(scope), std::string(key)});
    return !r.rows.empty();
}

std::size_t SqliteStore::purge_older_than(std::chrono::seconds age) {
    std::lock_guard lock(impl_->mutex);
    const int64_t limit =
        now_ms() - std::chrono::duration_cast<std::chrono::milliseconds>(age).count();
    auto r =
        impl_->run("DELETE FROM " + impl_->quoted_table() + " WHERE processed_at < ?", {limit});
    return static_cast<std::size_t>(r.changes);
}

const std::string& SqliteStore::path() const noexcept {
    return impl_->path;
}

std::shared_ptr<IdempotencyStore> open_store(std::string_view url) {
    if (url == "memory://" || url == "memory:") return std::make_shared<MemoryStore>();
    constexpr std::string_view sqlite = "sqlite://";
    if (url.substr(0, sqlite.size()) == sqlite) {
        auto rest = url.substr(sqlite.size());  // "/relative.db" or "//absolute.db"
        if (rest.empty() || rest == "/")
            throw ConfigurationError("store URL '" + redacted_url(url) +
                                     "' names no file: use sqlite:///relative.db, "
                                     "sqlite:////absolute/path.db or sqlite:///:memory:");
        return std::make_shared<SqliteStore>(std::string(rest.substr(1)));
    }
    if (url.substr(0, 8) == "redis://") return std::make_shared<RedisStore>(std::string(url));
    if (url.substr(0, 13) == "postgresql://" || url.substr(0, 11) == "postgres://")
        return std::make_shared<PostgresStore>(std::string(url));
    throw ConfigurationError("store URL '" + redacted_url(url) +
                             "': expected memory://, sqlite:///path.db, redis://host:port/db or "
                             "postgresql://...");
}

std::shared_ptr<IdempotencyStore> open_database(std::string_view url) {
    constexpr std::string_view sqlite = "sqlite://";
    if (url.substr(0, sqlite.size()) == sqlite) {
        auto rest = url.substr(sqlite.size());
        if (rest.empty() || rest == "/")
            throw ConfigurationError("database URL '" + redacted_url(url) +
                                     "' names no file: use sqlite:///relative.db or "
                                     "sqlite:////absolute/path.db");
        return std::make_shared<SqliteStore>(std::string(rest.substr(1)), "postroom_processed",
                                             std::chrono::seconds(30), false);
    }
    if (url.substr(0, 13) == "postgresql://" || url.substr(0, 11) == "postgres://")
        return std::make_shared<PostgresStore>(std::string(url), "postroom_processed", 4, false);
    throw ConfigurationError("database URL '" + redacted_url(url) +
                             "' is not supported: use sqlite:///path.db or postgresql://...");
}

}  // namespace postroom::stores
