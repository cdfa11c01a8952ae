#include <libpq-fe.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>

#include "../detail/deleter.hpp"
#include "postroom/error.hpp"
#include "postroom/stores/store.hpp"

namespace postroom::stores {

namespace {

using postroom::detail::Deleter;
using ConnectionHandle = std::unique_ptr<PGconn, Deleter<PQfinish>>;
using ResultHandle = std::unique_ptr<PGresult, Deleter<PQclear>>;

// libpq's conninfo may hold a password: never echo it in errors.
std::string redact(const std::string& conninfo) {
    auto at = conninfo.find('@');
    auto scheme = conninfo.find("://");
    if (at == std::string::npos || scheme == std::string::npos || at < scheme) return conninfo;
    auto colon = conninfo.find(':', scheme + 3);
    if (colon == std::string::npos || colon > at) return conninfo;
    return conninfo.substr(0, colon) + ":***" + conninfo.substr(at);
}

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
            throw StorageError("cannot connect to PostgreSQL at " + redact(conninfo) + ": " + why +
                                   "; is it running, and are host, port and database right?",
                               Retriable::yes);
        }
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

    static SqlResult run(PGconn* conn, std::string_view sql, const std::vector<SqlValue>& params) {
        std::vector<std::string> text(params.size());
        std::vector<const char*> values(params.size(), nullptr);
        std::vector<int> lengths(params.size(), 0), formats(params.size(), 0);
        for (std::size_t i = 0; i < params.size(); ++i) {
            std::visit(
                [&](const auto& v) {
                    using T = std::decay_t<decltype(v)>;
                    if constexpr (std::is_same_v<T, std::monostate>) {
                        values[i] = nullptr;
                    } else if constexpr (std::is_same_v<T, int64_t>) {
                        text[i] = std::to_string(v);
                        values[i] = text[i].c_str();
                    } else if constexpr (std::is_same_v<T, double>) {
                        char buf[64];
                        std::snprintf(buf, sizeof buf, "%.17g", v);
                        text[i] = buf;
                        values[i] = text[i].c_str();
                    } else if constexpr (std::is_same_v<T, std::string>) {
                        values[i] = v.c_str();
                    } else {
                        values[i] = v.bytes.data();
                        lengths[i] = static_cast<int>(v.bytes.size());
                        formats[i] = 1;  // binary: bytea as is
                    }
                },
                params[i]);
        }
        std::string statement(sql);
        ResultHandle r(PQexecParams(conn, statement.c_str(), static_cast<int>(params.size()),
                                    nullptr, values.data(), lengths.data(), formats.data(), 0));
        auto status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
        if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
            throw_pg(conn, r.get(), "execute '" + statement.substr(0, 80) + "'");
        SqlResult result;
        const int columns = PQnfields(r.get());
        for (int c = 0; c < columns; ++c) result.columns.emplace_back(PQfname(r.get(), c));
        const int rows = PQntuples(r.get());
        for (int row = 0; row < rows; ++row) {
            std::vector<SqlValue> out;
            for (int c = 0; c < columns; ++c) {
                if (PQgetisnull(r.get(), row, c)) {
                    out.emplace_back(std::monostate{});
                    continue;
                }
                const char* v = PQgetvalue(r.get(), row, c);
                switch (PQftype(r.get(), c)) {
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
                            std::string(v, static_cast<std::size_t>(PQgetlength(r.get(), row, c))));
                }
            }
            result.rows.push_back(std::move(out));
        }
        const char* affected = PQcmdTuples(r.get());
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
        return PostgresStore::Impl::run(conn_.get(), sql, params);
    }

private:
    void require_open() const {
        if (!open_) throw UsageError("the store transaction is already committed or rolled back");
    }
    std::shared_ptr<PostgresStore::Impl> impl_;
    ConnectionHandle conn_;
    bool open_ = false;
};

}  // namespace

PostgresStore::PostgresStore(const std::string& conninfo, const std::string& table,
                             std::size_t pool_size)
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
