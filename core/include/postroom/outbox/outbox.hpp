#pragma once
// The transactional outbox: the application adds its event to the outbox table in the same
// database transaction as its business data; the relay publishes committed rows to the
// broker and marks them sent only after the broker acknowledged them.
//
// The table (created and migrated here) follows Debezium's outbox event router — id,
// aggregatetype, aggregateid, type, payload — so a writer can switch to or from CDC
// unchanged, plus what the relay needs: seq (insertion order), headers (the event's other
// CloudEvent attributes as a JSON object), topic (destination override), created_at, status
// (pending | sent | failed), attempts, sent_at, error. The payload may be bytea (what
// postroom creates), jsonb, json or text; it is published as PostgreSQL returns it. A table
// laid out as Debezium's documentation shows (the event columns only) is refused with the
// command that adds the relay's columns, or adopted in place with `migrate` (PostgreSQL).
// Where a row goes and which headers it gets: routing.hpp (postroom's or Debezium's).
//
// Relay rules:
// - Never "seq greater than the last one seen": on SQLite rows are read by status; on
//   PostgreSQL the relay follows a cursor over seq that stays below any seq a running
//   transaction may hold (cursor.hpp), so a transaction that commits late with a lower seq
//   is still published (no gaps).
// - One relay per table publishes at a time: a lease row in postroom_outbox_relays, renewed
//   before every batch and while it waits for the broker, and checked again in the
//   transaction that marks the batch sent. A second relay waits as a standby and takes over
//   when the lease expires (a relay that hangs longer than the lease and then resumes can
//   publish its batch once more after the new leader; it never marks it).
// - A batch is published (key = aggregateid, so per-aggregate order holds), then marked sent
//   (or deleted) once acknowledged. Two batches are in flight at a time: the next one is read
//   and published while the previous one is marked. A crash before the mark publishes the
//   batches in flight again: consumers dedupe on the event id, which is the row id.
// - A row that can never be published (too large, not a valid event, no such topic) is
//   marked failed with its reason; the rest keeps flowing. requeue_failed() retries them.
// - While the broker or the database is unreachable, the relay backs off (no hot loop).
//
// Thread-safety: an Outbox is used from one thread; stop() may be called from any thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "postroom/event.hpp"
#include "postroom/kafka/config.hpp"
#include "postroom/message.hpp"
#include "postroom/outbox/routing.hpp"
#include "postroom/stores/store.hpp"

namespace postroom::outbox {

enum class Dialect { sqlite, postgres };

// The type of the payload column, which decides how a writer's bytes are stored in it
// (bytea as they are; text, json and jsonb as UTF-8 text). SQLite stores bytes in any case.
enum class PayloadColumn { bytea, text, json, jsonb };

// What a writer adds: an event bound for the broker.
struct OutboxRow {
    std::string id;                      // the CloudEvent id (consumers dedupe on it)
    std::string aggregate_type;          // Debezium's aggregatetype
    std::string aggregate_id;            // the message key: per-aggregate order
    std::string type;                    // the CloudEvent type
    std::optional<std::string> payload;  // the event's data
    std::string headers_json = "{}";     // other CloudEvent attributes
    std::optional<std::string> topic;    // destination override
};

// The row for `event` (id, type, data; source, datacontenttype, subject, time, dataschema and
// extensions go to headers_json). Throws CodecError for an invalid event.
OutboxRow row_for(const Event& event, const std::string& aggregate_type,
                  const std::string& aggregate_id, const std::optional<std::string>& topic);

// The INSERT statement for writers with their own connection, in the dialect's placeholder
// style ("?" for SQLite, "$1".. for PostgreSQL when `numbered`, else "%s" for psycopg):
// parameters id, aggregatetype, aggregateid, type, payload, headers, topic. The payload
// parameter is bytes; for a text, json or jsonb column it is converted from UTF-8.
std::string insert_statement(Dialect dialect, const std::string& table, bool numbered = true,
                             PayloadColumn payload = PayloadColumn::bytea);

// Adds `row` inside `transaction` (a SQLite or PostgreSQL store transaction on the outbox's
// database): it commits or rolls back with the caller's own writes.
void add(stores::Transaction& transaction, Dialect dialect, const std::string& table,
         const OutboxRow& row, PayloadColumn payload = PayloadColumn::bytea);

struct FailedRow {
    int64_t seq = 0;
    std::string id;
    std::string aggregate_id;
    std::string topic;
    std::string error;
};

struct OutboxStatus {
    int64_t pending = 0;
    int64_t failed = 0;
    int64_t sent = 0;  // sent rows still kept (delete_sent = false)
    std::optional<double> oldest_pending_age_seconds;
    std::vector<FailedRow> failed_rows;  // up to 100, oldest first
};

struct RelayCounters {
    int64_t published = 0;  // rows acknowledged and marked sent
    int64_t failed = 0;     // rows marked failed
    int64_t batches = 0;
    int64_t blocked_waits = 0;  // backoffs: broker or database unavailable
    int64_t standby_waits = 0;  // another relay holds the lease
    int64_t purged = 0;         // sent rows deleted by the retention
};

using LogSink = std::function<void(int level, const std::string& line)>;

struct OutboxConfig {
    std::string database_url;  // sqlite:///path.db or postgresql://...
    std::string table = "postroom_outbox";
    // kafka://, embedded:// (idempotent producer, per-key order) or redis:// (one pipeline
    // of XADD per batch to the streams; a lost connection re-sends the batch, which may add
    // an entry twice: consumers dedupe on the event id).
    std::string broker_url = "embedded://";
    // Destination for rows without a topic of their own; empty: the routing's topic
    // template, else their aggregatetype. Exclusive with routing.topic_template.
    std::string topic;
    Routing routing;  // postroom's by default; Routing::debezium() for Debezium's defaults
    // An existing table without the relay's columns (Debezium's layout) gets them, in place
    // (PostgreSQL); without it such a table is refused with the command that adds them.
    bool migrate = false;
    std::string source = "/postroom/outbox";  // CloudEvent source for rows that have none
    std::size_t batch_size = 500;
    std::chrono::milliseconds poll_interval{500};
    std::chrono::milliseconds publish_timeout{30'000};
    // How long a relay that stopped renewing (crashed, hung) keeps the others waiting; it is
    // renewed every lease/3 while a batch waits for the broker.
    std::chrono::milliseconds lease{5'000};
    std::chrono::milliseconds blocked_backoff_max{10'000};
    bool delete_sent = false;  // delete rows once sent instead of marking them
    // Sent rows older than this are deleted (checked every purge_interval by relay_once());
    // 0 = keep them.
    std::chrono::seconds retention{0};
    std::chrono::seconds purge_interval{600};
    std::size_t max_message_bytes = 1 << 20;
    kafka::Properties producer_properties;  // Kafka only
    std::function<void()> on_wait;          // called at least every 100 ms while waiting
    LogSink log;
};

class Outbox {
public:
    // Opens the database and creates or migrates the outbox table. Throws
    // ConfigurationError for a table name that is not allowed, a routing that is not valid
    // or names columns the table lacks, and a table the relay cannot use (see above).
    explicit Outbox(OutboxConfig config);
    ~Outbox();
    Outbox(Outbox&&) noexcept;
    Outbox& operator=(Outbox&&) noexcept;

    Dialect dialect() const noexcept;
    PayloadColumn payload_column() const noexcept;
    // The relay's columns `migrate` added to an existing table (empty: none).
    const std::vector<std::string>& added_columns() const noexcept;
    const OutboxConfig& config() const noexcept;
    // The database the outbox lives in, for add() in postroom's own transactions.
    std::shared_ptr<stores::IdempotencyStore> database() const;

    // One relay round: renews the lease, publishes pending rows batch by batch (pipelined)
    // until none are left or about a second has passed, and marks them before it returns.
    // Returns how many rows were marked sent or failed; 0 when there was nothing to do or
    // another relay holds the lease. Throws on database or broker trouble (run() backs off).
    std::size_t relay_once();
    // relay_once() until stop(), waiting poll_interval when idle and backing off on errors.
    void run();
    void stop() noexcept;
    bool stopping() const noexcept;

    OutboxStatus status();
    std::size_t requeue_failed();                                 // failed -> pending; how many
    std::size_t purge_sent_older_than(std::chrono::seconds age);  // how many deleted
    RelayCounters counters() const;
    void close();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace postroom::outbox
