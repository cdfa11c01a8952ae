#pragma once
// Idempotency stores: remember which events a processor has applied, so a redelivered event
// is skipped instead of applied twice. The scope is the processor name, the key the event's
// idempotency key (its CloudEvent id by default).
//
// A Transaction holds the dedupe mark and, for SQL stores, the handler's own writes: both
// commit or roll back together. Destroying an uncommitted Transaction rolls it back.
//
// Thread-safety: stores may be shared between threads. A Transaction belongs to one thread.
// Two transactions claiming the same key at once: the second waits for the first; if the
// first commits, the second sees a duplicate; if it rolls back, the second may claim.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace postroom::stores {

struct Blob {
    std::string bytes;
    friend bool operator==(const Blob&, const Blob&) = default;
};
using SqlValue = std::variant<std::monostate, int64_t, double, std::string, Blob>;

struct SqlResult {
    std::vector<std::string> columns;
    std::vector<std::vector<SqlValue>> rows;
    int64_t changes = 0;  // rows inserted, updated or deleted by the statement
};

class Transaction {
public:
    virtual ~Transaction() = default;
    // Records (scope, key) as applied; false when it already was (a duplicate).
    virtual bool claim(std::string_view scope, std::string_view key) = 0;
    // Claims many keys at once, in one round trip where the store can. result[i] is false for
    // a duplicate: already applied, or equal to an earlier key of `keys`.
    virtual std::vector<bool> claim_batch(std::string_view scope,
                                          const std::vector<std::string>& keys);
    // claim_batch() in two steps, so the caller can work while the store does: start sends
    // the claim where the store can (Redis), finish waits for it and returns what
    // claim_batch() would. Other stores claim in finish. One claim in flight at a time.
    virtual void start_claim_batch(std::string_view scope, const std::vector<std::string>& keys);
    virtual std::vector<bool> finish_claim_batch();
    // Gives back claims this transaction made but will not use (events of a batch that were
    // not handled in it), so that a later transaction can claim them.
    virtual void unclaim(std::string_view scope, const std::vector<std::string>& keys) = 0;
    // Per-event boundary inside a batch transaction: rollback_to_savepoint() undoes the
    // handler writes (SQL) or queued commands (Redis) made since the last savepoint(), and
    // keeps everything before it.
    virtual void savepoint() {}
    virtual void rollback_to_savepoint() {}
    virtual void commit() = 0;
    // Starts the commit and, where the store can, returns before its outcome is known
    // (Redis: the MULTI/EXEC is sent and its reply read later), so the caller can do other
    // work meanwhile. Returns true if so: finish_commit() then waits for the outcome and
    // throws what commit() would. Other stores commit here and return false.
    virtual bool start_commit() {
        commit();
        return false;
    }
    virtual void finish_commit() {}
    virtual void rollback() noexcept = 0;
    // SQL stores run `sql` inside this transaction ('?' placeholders for SQLite, $1, $2, ...
    // for PostgreSQL); other stores throw UsageError.
    virtual SqlResult execute(std::string_view sql, const std::vector<SqlValue>& params = {});
    // The Redis store queues `command` (e.g. {"INCR", "orders:count"}) to run at commit in
    // the same MULTI/EXEC as the dedupe marks, so the effect and the mark apply together;
    // other stores throw UsageError.
    virtual void enqueue_command(std::vector<std::string> command);

private:
    // A claim started by the default start_claim_batch(), made by finish_claim_batch().
    std::string started_scope_;
    std::vector<std::string> started_keys_;
};

class IdempotencyStore {
public:
    virtual ~IdempotencyStore() = default;
    virtual std::unique_ptr<Transaction> begin() = 0;
    virtual bool contains(std::string_view scope, std::string_view key) = 0;
    // Forgets marks older than `age`; returns how many. A redelivery older than the
    // retention is applied again: the retention is the replay horizon.
    virtual std::size_t purge_older_than(std::chrono::seconds age) = 0;
    virtual std::string kind() const = 0;
};

// Bounded, in-process: for tests and demos. Beyond `capacity` the oldest marks are dropped.
class MemoryStore final : public IdempotencyStore {
public:
    explicit MemoryStore(std::size_t capacity = 1'000'000);
    ~MemoryStore() override;
    std::unique_ptr<Transaction> begin() override;
    bool contains(std::string_view scope, std::string_view key) override;
    std::size_t purge_older_than(std::chrono::seconds age) override;
    std::string kind() const override { return "memory"; }
    std::size_t size() const;

    struct State;

private:
    std::shared_ptr<State> state_;
};

// SQLite: the embedded default. One file, WAL journal, synchronous=FULL; BEGIN IMMEDIATE
// with a busy timeout so concurrent writers (threads or processes) wait instead of failing.
class SqliteStore final : public IdempotencyStore {
public:
    // `path` is a file name (":memory:" for a private in-memory database). `table` must
    // match [A-Za-z_][A-Za-z0-9_]{0,62}.
    // With create_table = false the dedupe table is neither created nor needed: the store
    // serves only its transactions (the outbox uses it so).
    explicit SqliteStore(const std::string& path, const std::string& table = "postroom_processed",
                         std::chrono::milliseconds busy_timeout = std::chrono::seconds(30),
                         bool create_table = true);
    ~SqliteStore() override;
    std::unique_ptr<Transaction> begin() override;
    bool contains(std::string_view scope, std::string_view key) override;
    std::size_t purge_older_than(std::chrono::seconds age) override;
    std::string kind() const override { return "sqlite"; }
    const std::string& path() const noexcept;

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

// PostgreSQL: INSERT ... ON CONFLICT DO NOTHING on a primary key (scope, key); a second
// transaction claiming the same key waits on the first (row lock). A small pool of
// connections (one per open transaction); a dropped connection is re-established on the
// next begin(). Handler SQL uses PostgreSQL's own placeholders ($1, $2, ...).
class PostgresStore final : public IdempotencyStore {
public:
    // `conninfo` is a libpq connection string or URI (postgresql://user@host:port/db).
    explicit PostgresStore(const std::string& conninfo,
                           const std::string& table = "postroom_processed",
                           std::size_t pool_size = 4, bool create_table = true);
    ~PostgresStore() override;
    std::unique_ptr<Transaction> begin() override;
    bool contains(std::string_view scope, std::string_view key) override;
    std::size_t purge_older_than(std::chrono::seconds age) override;
    std::string kind() const override { return "postgres"; }

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

// Redis: a claim is SET key NX, written once as "tx:<token>" with the retention as TTL
// (pipelined per batch; Redis forgets the mark itself: the retention is the replay horizon).
// The token names the transaction's record, "open" with the lease as TTL while it runs and
// "committed:<ms>" after; a mark counts as applied when its record is committed. A second
// worker claiming the same key waits for the first's outcome, up to the lease; after it, the
// claim is taken over. A commit whose lease ran out still applies if nobody took a claim
// over, and is refused (retriable) if someone did. Effects that are Redis commands join the
// record: enqueue_command() runs them at commit in the same MULTI/EXEC. Any other effect is
// committed by the handler before the mark — a crash between the two applies it again, so
// make such effects idempotent or use a SQL store. Transactions have no SQL (execute throws).
class RedisStore final : public IdempotencyStore {
public:
    // `url` is redis://[:password@]host:port/db.
    explicit RedisStore(const std::string& url,
                        std::chrono::seconds retention = std::chrono::hours(24 * 7),
                        const std::string& prefix = "postroom:processed:",
                        std::chrono::milliseconds lease = std::chrono::seconds(60));
    ~RedisStore() override;
    std::unique_ptr<Transaction> begin() override;
    bool contains(std::string_view scope, std::string_view key) override;
    std::size_t purge_older_than(std::chrono::seconds age) override;
    std::string kind() const override { return "redis"; }

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

// memory://, sqlite:///relative/or/absolute/path.db, redis://host:port/db or postgresql://...
// (postgres:// too). Throws ConfigurationError otherwise.
std::shared_ptr<IdempotencyStore> open_store(std::string_view url);

// The SQL database at `url` (sqlite:///path.db or postgresql://...) as a store used only for
// its transactions: no dedupe table is created. Throws ConfigurationError for other URLs.
std::shared_ptr<IdempotencyStore> open_database(std::string_view url);

// Whether `name` is an acceptable SQL table name (allow-list pattern, no quoting tricks).
bool is_valid_table_name(std::string_view name) noexcept;

}  // namespace postroom::stores
