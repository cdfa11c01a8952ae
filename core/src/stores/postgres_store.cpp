#include <libpq-fe.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_set>

#include "../detail/deleter.hpp"
#include "postroom/error.hpp"
#include "postroom/redact.hpp"
#include "postroom/stores/store.hpp"

namespace postroom::stores {

namespace {

using postroom::detail::Deleter;
using ConnectionHandle = std::unique_ptr<PGconn, Deleter<PQfinish>>;
using ResultHandle = std::unique_ptr<PGresult, Deleter<PQclear>>;

// The one translation from PostgreSQL failures to postroom errors, by SQLSTATE class.
[[noreturn]] void throw_pg(PGconn* conn, const PGresult* result, std::string_view context) {
    const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
    std::string sqlstate = state ? state : "";
    std::string text = result ? PQresultErrorMessage(result) : (conn ? PQerrorMessage(conn) : "");
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    std::string message = "PostgreSQL " + std::string(context) + ": " + text +
                          (sqlstate.empty() ? "" : " (SQLSTATE " + sqlstate + ")");
    if (conn && PQstatus(conn) == CONNECTION_BAD)
        throw StorageError(message + "; the connection was lost, it is re-established on retry",
                           Retriable::yes);
    if (sqlstate == "40001" || sqlstate == "40P01" || sqlstate.rfind("08", 0) == 0 ||
        sqlstate.rfind("57P", 0) == 0 || sqlstate == "55P03")
        throw StorageError(message, Retriable::yes);
    if (sqlstate.rfind("28", 0) == 0 || sqlstate == "3D000")
        throw ConfigurationError(message + "; check the database URL and credentials");
    throw StorageError(message, sqlstate.empty() ? Retriable::unknown : Retriable::no);
}

// A text[] literal for `values`: every element double-quoted, '"' and '\\' escaped.
std::string text_array(const std::vector<std::string>& values) {
    std::string out = "{";
    for (const auto& v : values) {
        if (out.size() > 1) out += ',';
        out += '"';
        for (char c : v) {
            if (c == '"' || c == '\\') out += '\\';
            out += c;
        }
        out += '"';
    }
    return out + "}";
}

int64_t parse_int(const char* s) {
    return std::strtoll(s, nullptr, 10);
}

// Type OIDs from pg_type.h (stable across PostgreSQL versions).
constexpr Oid bool_oid = 16, bytea_oid = 17, int8_oid = 20, int2_oid = 21, int4_oid = 23,
              float4_oid = 700, float8_oid = 701;

}  // namespace

struct PostgresStore::Impl {
    std::string conninfo;
    std::string table;
    std::size_t pool_size = 4;
    std::mutex mutex;
    std::condition_variable returned;
    std::vector<ConnectionHandle> idle;
    std::size_t open = 0;  // connections created and alive (idle or lent)

    std::string quoted_table() const { return "\"" + table + "\""; }

    ConnectionHandle connect() {
        ConnectionHandle c(PQconnectdb(conninfo.c_str()));
        if (!c || PQstatus(c.get()) != CONNECTION_OK) {
            std::string why = c ? PQerrorMessage(c.get()) : "out of memory";
            while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
            // libpq's conninfo may hold a password, and libpq quotes parts of a URL it
            // cannot parse: never echo either.
            throw StorageError("cannot connect to PostgreSQL at " + redacted_url(conninfo) + ": " +
                                   redact_secrets(why, conninfo) +
                                   "; is it running, and are host, port and database right?",
                               Retriable::yes);
        }
        // Server notices ("relation ... already exists, skipping") are not errors: keep them
        // off the application's stderr.
        PQsetNoticeProcessor(
            c.get(), [](void*, const char*) {}, nullptr);
        return c;
    }

    ConnectionHandle acquire() {
        std::unique_lock lock(mutex);
        returned.wait(lock, [&] { return !idle.empty() || open < pool_size; });
        if (!idle.empty()) {
            auto c = std::move(idle.back());
            idle.pop_back();
            lock.unlock();
            if (PQstatus(c.get()) != CONNECTION_OK) {
                PQreset(c.get());
                if (PQstatus(c.get()) != CONNECTION_OK) {
                    release(nullptr);
                    return connect_counted();
                }
            }
            return c;
        }
        ++open;
        lock.unlock();
        try {
            return connect();
        } catch (...) {
            release(nullptr);
            throw;
        }
    }

    ConnectionHandle connect_counted() {
        {
            std::lock_guard lock(mutex);
            ++open;
        }
        try {
            return connect();
        } catch (...) {
            release(nullptr);
            throw;
        }
    }

    // Gives a connection back (or, with null, forgets a dead one).
    void release(ConnectionHandle c) {
        std::lock_guard lock(mutex);
        if (c && PQstatus(c.get()) == CONNECTION_OK)
            idle.push_back(std::move(c));
        else
            --open;
        returned.notify_one();
    }

    static ResultHandle exec(PGconn* conn, const std::string& sql, std::string_view context) {
        ResultHandle r(PQexec(conn, sql.c_str()));
        auto status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
        if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
            throw_pg(conn, r.get(), context);
        return r;
    }

    // Parameters in libpq's form: text for numbers and strings, binary for blobs.
    struct Params {
        std::vector<std::string> text;
        std::vector<const char*> values;
        std::vector<int> lengths, formats;
        int count() const { return static_cast<int>(values.size()); }
    };

    static Params to_params(const std::vector<SqlValue>& params) {
        Params p;
        p.text.resize(params.size());
        p.values.assign(params.size(), nullptr);
        p.lengths.assign(params.size(), 0);
        p.formats.assign(params.size(), 0);
        for (std::size_t i = 0; i < params.size(); ++i) {
            std::visit(
                [&](const auto& v) {
                    using T = std::decay_t<decltype(v)>;
                    if constexpr (std::is_same_v<T, std::monostate>) {
                        p.values[i] = nullptr;
                    } else if constexpr (std::is_same_v<T, int64_t>) {
                        p.text[i] = std::to_string(v);
                        p.values[i] = p.text[i].c_str();
                    } else if constexpr (std::is_same_v<T, double>) {
                        char buf[64];
                        std::snprintf(buf, sizeof buf, "%.17g", v);
                        p.text[i] = buf;
                        p.values[i] = p.text[i].c_str();
                    } else if constexpr (std::is_same_v<T, std::string>) {
                        p.values[i] = v.c_str();
                    } else {
                        p.values[i] = v.bytes.data();
                        p.lengths[i] = static_cast<int>(v.bytes.size());
                        p.formats[i] = 1;  // binary: bytea as is
                    }
                },
                params[i]);
        }
        return p;
    }

    static SqlResult run(PGconn* conn, std::string_view sql, const std::vector<SqlValue>& params) {
        auto p = to_params(params);
        std::string statement(sql);
        ResultHandle r(PQexecParams(conn, statement.c_str(), p.count(), nullptr, p.values.data(),
                                    p.lengths.data(), p.formats.data(), 0));
        auto status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
        if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
            throw_pg(conn, r.get(), "execute '" + statement.substr(0, 80) + "'");
        return to_result(r.get());
    }

    // Runs the parameterless `before` statements, then `sql`, in one round trip (libpq
    // pipeline mode); returns the result of `sql`.
    static SqlResult run_after(PGconn* conn, const std::vector<std::string>& before,
                               std::string_view sql, const std::vector<SqlValue>& params) {
        if (before.empty()) return run(conn, sql, params);
        auto p = to_params(params);
        std::string statement(sql);
        if (PQenterPipelineMode(conn) != 1) throw_pg(conn, nullptr, "enter pipeline mode");
        bool sent = true;
        for (const auto& b : before)
            sent = sent && PQsendQueryParams(conn, b.c_str(), 0, nullptr, nullptr, nullptr, nullptr,
                                             0) == 1;
        sent =
            sent && PQsendQueryParams(conn, statement.c_str(), p.count(), nullptr, p.values.data(),
                                      p.lengths.data(), p.formats.data(), 0) == 1;
        sent = sent && PQpipelineSync(conn) == 1;
        // Read every result up to the sync point, keeping the first failure and the last
        // statement's result.
        ResultHandle failure, last;
        std::size_t statements = before.size() + 1, seen = 0, ends = 0;
        for (bool synced = false; !synced && sent;) {
            ResultHandle r(PQgetResult(conn));
            if (!r) {
                // The end of one statement's results; more ends than statements means the
                // connection broke before the sync point.
                if (PQstatus(conn) == CONNECTION_BAD || ++ends > statements + 1) break;
                continue;
            }
            switch (PQresultStatus(r.get())) {
                case PGRES_PIPELINE_SYNC: synced = true; break;
                case PGRES_COMMAND_OK:
                case PGRES_TUPLES_OK:
                    if (++seen == statements) last = std::move(r);
                    break;
                case PGRES_PIPELINE_ABORTED: ++seen; break;
                default:
                    ++seen;
                    if (!failure) failure = std::move(r);
            }
        }
        PQexitPipelineMode(conn);
        if (failure) throw_pg(conn, failure.get(), "execute '" + statement.substr(0, 80) + "'");
        if (!sent || !last) throw_pg(conn, nullptr, "execute '" + statement.substr(0, 80) + "'");
        return to_result(last.get());
    }

    static SqlResult to_result(const PGresult* r) {
        SqlResult result;
        const int columns = PQnfields(r);
        for (int c = 0; c < columns; ++c) result.columns.emplace_back(PQfname(r, c));
        const int rows = PQntuples(r);
        for (int row = 0; row < rows; ++row) {
            std::vector<SqlValue> out;
            for (int c = 0; c < columns; ++c) {
                if (PQgetisnull(r, row, c)) {
                    out.emplace_back(std::monostate{});
                    continue;
                }
                const char* v = PQgetvalue(r, row, c);
                switch (PQftype(r, c)) {
                    case int2_oid:
                    case int4_oid:
                    case int8_oid: out.emplace_back(parse_int(v)); break;
                    case bool_oid: out.emplace_back(int64_t{v[0] == 't' ? 1 : 0}); break;
                    case float4_oid:
                    case float8_oid: out.emplace_back(std::strtod(v, nullptr)); break;
                    case bytea_oid: {
                        size_t n = 0;
                        unsigned char* raw =
                            PQunescapeBytea(reinterpret_cast<const unsigned char*>(v), &n);
                        out.emplace_back(Blob{std::string(reinterpret_cast<char*>(raw), n)});
                        PQfreemem(raw);
                        break;
                    }
                    default:
                        out.emplace_back(
                            std::string(v, static_cast<std::size_t>(PQgetlength(r, row, c))));
                }
            }
            result.rows.push_back(std::move(out));
        }
        const char* affected = PQcmdTuples(const_cast<PGresult*>(r));
        result.changes = affected && *affected ? parse_int(affected) : 0;
        return result;
    }
};

namespace {

class PostgresTransaction final : public Transaction {
public:
    explicit PostgresTransaction(std::shared_ptr<PostgresStore::Impl> impl)
        : impl_(std::move(impl)), conn_(impl_->acquire()) {
        try {
            PostgresStore::Impl::exec(conn_.get(), "BEGIN", "begin transaction");
        } catch (...) {
            impl_->release(std::move(conn_));
            throw;
        }
        open_ = true;
    }
    ~PostgresTransaction() override { rollback(); }

    bool claim(std::string_view scope, std::string_view key) override {
        require_open();
        auto r = PostgresStore::Impl::run(
            conn_.get(),
            "INSERT INTO " + impl_->quoted_table() +
                " (scope, key) VALUES ($1, $2) ON CONFLICT (scope, key) DO NOTHING",
            {std::string(scope), std::string(key)});
        return r.changes == 1;
    }

    // One statement for the whole batch; keys are inserted in sorted order so that two
    // transactions claiming overlapping batches lock rows in the same order (no deadlock).
    std::vector<bool> claim_batch(std::string_view scope,
                                  const std::vector<std::string>& keys) override {
        require_open();
        std::vector<bool> claimed(keys.size(), false);
        if (keys.empty()) return claimed;
        auto r = PostgresStore::Impl::run(
            conn_.get(),
            "INSERT INTO " + impl_->quoted_table() +
                " (scope, key) SELECT $1, k FROM (SELECT DISTINCT unnest($2::text[]) AS k) AS "
                "batch ORDER BY k ON CONFLICT (scope, key) DO NOTHING RETURNING key",
            {std::string(scope), text_array(keys)});
        std::unordered_set<std::string> fresh;
        for (auto& row : r.rows) fresh.insert(std::get<std::string>(row.at(0)));
        for (std::size_t i = 0; i < keys.size(); ++i)
            claimed[i] = fresh.erase(keys[i]) > 0;  // erase: a repeated key is a duplicate
        return claimed;
    }

    void unclaim(std::string_view scope, const std::vector<std::string>& keys) override {
        require_open();
        if (keys.empty()) return;
        PostgresStore::Impl::run(
            conn_.get(),
            "DELETE FROM " + impl_->quoted_table() + " WHERE scope = $1 AND key = ANY($2::text[])",
            {std::string(scope), text_array(keys)});
    }

    // Savepoints cost a round trip, so they are taken lazily: with the event's first
    // execute(), in the same pipeline. An event that writes nothing needs none.
    void savepoint() override {
        require_open();
        batch_ = true;
        event_has_savepoint_ = false;
    }

    void rollback_to_savepoint() override {
        require_open();
        if (event_has_savepoint_)
            PostgresStore::Impl::exec(conn_.get(), "ROLLBACK TO SAVEPOINT postroom_event",
                                      "rollback to savepoint");
        event_has_savepoint_ = false;
    }

    void commit() override {
        require_open();
        open_ = false;
        try {
            PostgresStore::Impl::exec(conn_.get(), "COMMIT", "commit");
        } catch (const Error& e) {
            // If the connection died during COMMIT the outcome is unknown: the retry's claim
            // tells (a duplicate means it did commit).
            impl_->release(std::move(conn_));
            throw StorageError(std::string(e.what()) + " (commit outcome may be unknown)",
                               Retriable::yes);
        }
        impl_->release(std::move(conn_));
    }

    void rollback() noexcept override {
        if (!open_) return;
        open_ = false;
        ResultHandle r(PQexec(conn_.get(), "ROLLBACK"));
        impl_->release(std::move(conn_));
    }

    SqlResult execute(std::string_view sql, const std::vector<SqlValue>& params) override {
        require_open();
        if (!batch_ || event_has_savepoint_)
            return PostgresStore::Impl::run(conn_.get(), sql, params);
        std::vector<std::string> before;
        if (savepoints_taken_ > 0) before.emplace_back("RELEASE SAVEPOINT postroom_event");
        before.emplace_back("SAVEPOINT postroom_event");
        // Counted before the round trip: if the statement fails, its savepoint exists and
        // rollback_to_savepoint() needs it (if the savepoint itself failed, that rollback fails
        // and the caller rolls back the whole transaction).
        event_has_savepoint_ = true;
        ++savepoints_taken_;
        return PostgresStore::Impl::run_after(conn_.get(), before, sql, params);
    }

private:
    void require_open() const {
        if (!open_) throw UsageError("the store transaction is already committed or rolled back");
    }
    std::shared_ptr<PostgresStore::Impl> impl_;
    ConnectionHandle conn_;
    bool open_ = false;
    bool batch_ = false;                // savepoint() was called: events share this transaction
    bool event_has_savepoint_ = false;  // the current event's savepoint exists
    int savepoints_taken_ = 0;
};

}  // namespace

PostgresStore::PostgresStore(const std::string& conninfo, const std::string& table,
                             std::size_t pool_size, bool create_table)
    : impl_(std::make_shared<Impl>()) {
    if (!is_valid_table_name(table))
        throw ConfigurationError("idempotency table name '" + table +
                                 "' is not allowed: use letters, digits and '_', starting with a "
                                 "letter or '_', at most 63 bytes (PostgreSQL's limit)");
    if (pool_size == 0) throw ConfigurationError("PostgresStore pool_size must be positive");
    impl_->conninfo = conninfo;
    impl_->table = table;
    impl_->pool_size = pool_size;
    auto conn = impl_->connect_counted();
    if (!create_table) {
        impl_->release(std::move(conn));  // connected: the URL works
        return;
    }
    Impl::exec(conn.get(),
               "CREATE TABLE IF NOT EXISTS " + impl_->quoted_table() +
                   " (scope text NOT NULL, key text NOT NULL, processed_at timestamptz NOT NULL "
                   "DEFAULT now(), PRIMARY KEY (scope, key))",
               "create table " + table);
    Impl::exec(conn.get(),
               "CREATE INDEX IF NOT EXISTS \"" + table + "_at\" ON " + impl_->quoted_table() +
                   " (processed_at)",
               "create index");
    impl_->release(std::move(conn));
}

PostgresStore::~PostgresStore() = default;

std::unique_ptr<Transaction> PostgresStore::begin() {
    return std::make_unique<PostgresTransaction>(impl_);
}

bool PostgresStore::contains(std::string_view scope, std::string_view key) {
    auto conn = impl_->acquire();
    try {
        auto r = Impl::run(
            conn.get(), "SELECT 1 FROM " + impl_->quoted_table() + " WHERE scope = $1 AND key = $2",
            {std::string(scope), std::string(key)});
        impl_->release(std::move(conn));
        return !r.rows.empty();
    } catch (...) {
        impl_->release(std::move(conn));
        throw;
    }
}

std::size_t PostgresStore::purge_older_than(std::chrono::seconds age) {
    auto conn = impl_->acquire();
    try {
        auto r = Impl::run(conn.get(),
                           "DELETE FROM " + impl_->quoted_table() +
                               " WHERE processed_at < now() - make_interval(secs => $1)",
                           {static_cast<int64_t>(age.count())});
        impl_->release(std::move(conn));
        return static_cast<std::size_t>(r.changes);
    } catch (...) {
        impl_->release(std::move(conn));
        throw;
    }
}

}  // namespace postroom::stores
