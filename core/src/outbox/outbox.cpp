#include "postroom/outbox/outbox.hpp"

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <sys/select.h>

#include <simdjson.h>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "../detail/structured_log.hpp"
#include "../runtime/crash_points.hpp"
#include "layout.hpp"
#include "postroom/broker_url.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/binding.hpp"
#include "postroom/kafka/producer.hpp"
#include "postroom/redact.hpp"
#include "postroom/redis/streams.hpp"
#include "row_router.hpp"

namespace postroom::outbox {

using namespace std::chrono;
using stores::SqlValue;
using Clock = steady_clock;

namespace {

using postroom::detail::default_log;
using postroom::detail::escaped;

constexpr const char* relays_table = "postroom_outbox_relays";

int64_t epoch_ms() {
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string quoted(const std::string& name) {
    return "\"" + name + "\"";  // only ever for names that passed is_valid_table_name
}

// "?" for SQLite; "$n" for PostgreSQL.
std::string placeholder(Dialect d, int n) {
    return d == Dialect::sqlite ? "?" : "$" + std::to_string(n);
}

SqlValue optional_text(const std::optional<std::string>& s) {
    return s ? SqlValue(*s) : SqlValue(std::monostate{});
}

std::optional<std::string> text_of(const SqlValue& v) {
    if (auto* s = std::get_if<std::string>(&v)) return *s;
    if (auto* b = std::get_if<stores::Blob>(&v)) return b->bytes;
    if (auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
    return std::nullopt;
}

// The text in `v`, moved out of it.
std::optional<std::string> take_text(SqlValue& v) {
    if (auto* s = std::get_if<std::string>(&v)) return std::move(*s);
    if (auto* b = std::get_if<stores::Blob>(&v)) return std::move(b->bytes);
    return text_of(v);
}

bool is_text(const SqlValue& v, std::string_view text) {
    const auto* s = std::get_if<std::string>(&v);
    return s && *s == text;
}

// An outbox row's headers column: a flat JSON object of strings, parsed by simdjson (the
// fastest kernel this CPU has, chosen at run time). Each header goes to `put(name, value)`;
// anything else throws CodecError naming the fault.
void read_headers(std::string_view json,
                  const std::function<void(std::string_view, std::string_view)>& put) {
    // One parser and one padded buffer per thread, reused from row to row.
    thread_local simdjson::dom::parser parser;
    thread_local std::string buffer;
    buffer.assign(json);
    buffer.reserve(json.size() + simdjson::SIMDJSON_PADDING);
    simdjson::dom::element doc;
    if (auto e = parser
                     .parse(simdjson::padded_string_view(buffer.data(), buffer.size(),
                                                         buffer.capacity()))
                     .get(doc))
        throw CodecError("headers",
                         std::string("headers are not valid JSON: ") + simdjson::error_message(e));
    simdjson::dom::object object;
    if (doc.get_object().get(object)) throw CodecError("headers", "headers must be a JSON object");
    for (auto [name, value] : object) {
        std::string_view text;
        if (value.get_string().get(text))
            throw CodecError(std::string(name), "header '" + std::string(name) +
                                                    "' must be a string in the outbox row");
        put(name, text);
    }
}

int64_t int_of(const SqlValue& v) {
    if (auto* i = std::get_if<int64_t>(&v)) return *i;
    if (auto* d = std::get_if<double>(&v)) return static_cast<int64_t>(*d);
    if (auto* s = std::get_if<std::string>(&v)) return std::strtoll(s->c_str(), nullptr, 10);
    return 0;
}

std::string random_owner() {
    std::mt19937_64 rng{std::random_device{}()};
    char buf[32];
    std::snprintf(buf, sizeof buf, "relay-%016llx", static_cast<unsigned long long>(rng()));
    return buf;
}

}  // namespace

OutboxRow row_for(const Event& event, const std::string& aggregate_type,
                  const std::string& aggregate_id, const std::optional<std::string>& topic) {
    event.validate();
    if (aggregate_type.empty())
        throw CodecError("aggregatetype", "an outbox event needs an aggregate type");
    if (aggregate_id.empty())
        throw CodecError("aggregateid",
                         "an outbox event needs an aggregate id (it becomes the message key)");
    if (topic && topic->empty()) throw UsageError("an outbox topic override must not be empty");
    OutboxRow row;
    row.id = event.id;
    row.aggregate_type = aggregate_type;
    row.aggregate_id = aggregate_id;
    row.type = event.type;
    row.payload = event.data;
    nlohmann::json h = nlohmann::json::object();
    h["source"] = event.source;
    if (event.datacontenttype) h["datacontenttype"] = *event.datacontenttype;
    if (event.subject) h["subject"] = *event.subject;
    if (event.time) h["time"] = *event.time;
    if (event.dataschema) h["dataschema"] = *event.dataschema;
    for (const auto& [k, v] : event.extensions) h[k] = v;
    row.headers_json = h.dump();
    row.topic = topic;
    return row;
}

std::string insert_statement(Dialect dialect, const std::string& table, bool numbered,
                             PayloadColumn payload) {
    if (!stores::is_valid_table_name(table))
        throw ConfigurationError("outbox table name '" + table + "' is not allowed");
    std::vector<std::string> values;
    for (int n = 1; n <= 7; ++n)
        values.push_back(dialect == Dialect::postgres && !numbered ? "%s"
                                                                   : placeholder(dialect, n));
    if (dialect == Dialect::postgres && payload != PayloadColumn::bytea) {
        // The payload comes as bytes: text, json and jsonb columns take it as UTF-8 text.
        values[4] = "convert_from(" + values[4] + ", 'UTF8')";
        if (payload == PayloadColumn::json) values[4] += "::json";
        if (payload == PayloadColumn::jsonb) values[4] += "::jsonb";
    }
    std::string list;
    for (const auto& v : values) list += (list.empty() ? "" : ", ") + v;
    return "INSERT INTO " + quoted(table) +
           " (id, aggregatetype, aggregateid, type, payload, headers, topic) VALUES (" + list + ")";
}

void add(stores::Transaction& transaction, Dialect dialect, const std::string& table,
         const OutboxRow& row, PayloadColumn payload) {
    transaction.execute(
        insert_statement(dialect, table, true, payload),
        {row.id, row.aggregate_type, row.aggregate_id, row.type,
         row.payload ? SqlValue(stores::Blob{*row.payload}) : SqlValue(std::monostate{}),
         row.headers_json, optional_text(row.topic)});
}

struct Outbox::Impl {
    OutboxConfig config;
    Dialect dialect = Dialect::sqlite;
    std::shared_ptr<stores::IdempotencyStore> db;
    std::unique_ptr<kafka::Producer> producer;
    std::unique_ptr<redis::StreamProducer> stream_producer;  // redis:// brokers
    bool to_redis = false;
    std::string owner = random_owner();
    detail::RowRouter router;
    PayloadColumn payload_column = PayloadColumn::bytea;
    std::vector<std::string> added_columns;  // by `migrate`
    std::atomic<bool> stop_requested{false};
    mutable std::mutex counters_mutex;
    RelayCounters counts;
    bool leader = false;

    std::string p(int n) const { return placeholder(dialect, n); }
    std::string table() const { return quoted(config.table); }

    void log(int level, std::string_view what, const std::string& detail) {
        std::string line = std::string("postroom level=") + (level <= 3 ? "error" : "info") +
                           " outbox=\"" + escaped(config.table) + "\" event=\"" +
                           std::string(what) + "\" relay=\"" + owner + "\" detail=\"" +
                           escaped(detail) + "\"";
        (config.log ? config.log : default_log)(level, line);
    }

    template <typename F>
    void count(F&& f) {
        std::lock_guard lock(counters_mutex);
        f(counts);
    }

    // Runs `f(transaction)` in one transaction and commits.
    template <typename F>
    auto in_transaction(F&& f) {
        auto tx = db->begin();
        if constexpr (std::is_void_v<decltype(f(*tx))>) {
            f(*tx);
            tx->commit();
        } else {
            auto result = f(*tx);
            tx->commit();
            return result;
        }
    }

    // A name of at most 63 bytes for any table name (PostgreSQL would truncate a longer one).
    std::string pending_index_name() const {
        uint64_t h = 1469598103934665603ULL;  // FNV-1a
        for (unsigned char ch : config.table) h = (h ^ ch) * 1099511628211ULL;
        char buf[48];
        std::snprintf(buf, sizeof buf, "postroom_outbox_pending_%016llx",
                      static_cast<unsigned long long>(h));
        return buf;
    }

    void migrate() {
        const bool pg = dialect == Dialect::postgres;
        in_transaction([&](stores::Transaction& tx) {
            // An existing table: checked, and given the relay's columns if it lacks them and
            // `migrate` allows it (layout.cpp).
            const bool existed = detail::inspect_table(tx, dialect, config.table).exists;
            added_columns =
                detail::adopt_table(tx, dialect, config.table, config.database_url, config.migrate);
            // A table new (or new to seq) numbers its rows from 1: a cursor left behind by a
            // table dropped under the same name would pass over them.
            const bool new_seq = !existed || !added_columns.empty();
            tx.execute(
                "CREATE TABLE IF NOT EXISTS " + table() + " (" +
                (pg ? "seq bigserial PRIMARY KEY, " : "seq INTEGER PRIMARY KEY AUTOINCREMENT, ") +
                "id text NOT NULL UNIQUE, aggregatetype text NOT NULL, "
                "aggregateid text NOT NULL, type text NOT NULL, payload " +
                (pg ? "bytea" : "BLOB") + ", headers text NOT NULL DEFAULT '{}', topic text, " +
                (pg ? "created_at bigint NOT NULL DEFAULT "
                      "(extract(epoch from clock_timestamp()) * 1000)::bigint, "
                    : "created_at INTEGER NOT NULL DEFAULT "
                      "(CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)), ") +
                "status text NOT NULL DEFAULT 'pending', attempts integer NOT NULL "
                "DEFAULT 0, sent_at bigint, error text)");
            // Pending rows in seq order: a partial index, so marking a row sent takes it out
            // of the index instead of adding an entry, and the relay's read touches pending
            // rows only. Earlier versions indexed (status, seq) under "<table>_pending".
            if (!pg || config.table.size() + 8 <= 63)
                tx.execute("DROP INDEX IF EXISTS " + quoted(config.table + "_pending"));
            if (!pg)
                tx.execute("CREATE INDEX IF NOT EXISTS " + quoted(pending_index_name()) + " ON " +
                           table() + " (seq) WHERE status = 'pending'");
            if (pg) {
                // Wakes waiting relays at once (LISTEN on the table's name); they poll too.
                tx.execute(
                    "CREATE OR REPLACE FUNCTION postroom_outbox_notify() RETURNS trigger "
                    "LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify(TG_ARGV[0], ''); "
                    "RETURN NULL; END $$");
                // Created once: replacing it would wait for every transaction writing the
                // table (a relay restarted during a long transaction would hang here).
                if (tx.execute("SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND "
                               "tgname = 'postroom_outbox_notify'",
                               {table()})
                        .rows.empty())
                    tx.execute("CREATE TRIGGER postroom_outbox_notify AFTER INSERT ON " + table() +
                               " FOR EACH STATEMENT EXECUTE FUNCTION postroom_outbox_notify('" +
                               config.table + "')");
            }
            tx.execute(std::string("CREATE TABLE IF NOT EXISTS ") + relays_table +
                       " (outbox_table text PRIMARY KEY, owner text NOT NULL DEFAULT '', "
                       "expires_at bigint NOT NULL DEFAULT 0" +
                       (pg ? ", sent_through bigint" : "") + ")");
            if (new_seq)
                tx.execute(
                    std::string("DELETE FROM ") + relays_table + " WHERE outbox_table = " + p(1),
                    {config.table});
            tx.execute(std::string("INSERT INTO ") + relays_table + " (outbox_table) VALUES (" +
                           p(1) + ") ON CONFLICT (outbox_table) DO NOTHING",
                       {config.table});
            const auto layout = detail::inspect_table(tx, dialect, config.table);
            payload_column = detail::payload_column(layout, config.table);
            detail::check_routing_columns(layout, config.table, router.extra_columns());
        });
        if (pg) migrate_to_cursor();
    }

    // PostgreSQL: the relay follows a cursor over seq instead of marking each row sent (see
    // select_batch_by_cursor). Once per table: seq values are taken only after the writing
    // transaction has its transaction id (so a missing seq below a visible one belongs to a
    // transaction the snapshot lists as running, or to none), the partial index of pending
    // rows goes (rows stay 'pending' below the cursor), and the cursor starts below the first
    // pending row — computed under a lock that waits for every transaction writing the table.
    void migrate_to_cursor() {
        in_transaction([&](stores::Transaction& tx) {
            // Relays tables of earlier versions lack the column.
            if (tx.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = "
                           "current_schema() AND table_name = $1 AND column_name = "
                           "'sent_through'",
                           {std::string(relays_table)})
                    .rows.empty())
                tx.execute(std::string("ALTER TABLE ") + relays_table +
                           " ADD COLUMN IF NOT EXISTS sent_through bigint");
        });
        in_transaction([&](stores::Transaction& tx) {
            // Whether the table already follows the cursor (asked again under the lock).
            auto moved = [&](const char* lock) {
                auto r = tx.execute(std::string("SELECT sent_through FROM ") + relays_table +
                                        " WHERE outbox_table = $1" + lock,
                                    {config.table});
                return !r.rows.empty() && !std::holds_alternative<std::monostate>(r.rows[0][0]);
            };
            if (moved("")) return;
            tx.execute(
                "CREATE OR REPLACE FUNCTION postroom_outbox_next_seq(seq regclass) RETURNS bigint "
                "LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_current_xact_id(); "
                "RETURN nextval(seq); END $$");
            tx.execute("LOCK TABLE " + table() + " IN ACCESS EXCLUSIVE MODE");
            if (moved(" FOR UPDATE")) return;
            auto sequence = tx.execute("SELECT pg_get_serial_sequence($1, 'seq')", {table()});
            const auto name = sequence.rows.empty() ? std::nullopt : text_of(sequence.rows[0][0]);
            if (!name)
                throw ConfigurationError("outbox table '" + config.table +
                                         "' has no sequence behind its seq column; it was not "
                                         "created by postroom");
            std::string literal;  // the sequence's name as an SQL string literal
            for (char ch : *name) literal += ch == '\'' ? std::string("''") : std::string(1, ch);
            tx.execute("ALTER TABLE " + table() +
                       " ALTER COLUMN seq SET DEFAULT postroom_outbox_next_seq('" + literal +
                       "'::regclass)");
            tx.execute("DROP INDEX IF EXISTS " + quoted(pending_index_name()));
            tx.execute(std::string("UPDATE ") + relays_table +
                           " SET sent_through = (SELECT COALESCE(MIN(seq) - 1, "
                           "(SELECT COALESCE(MAX(seq), 0) FROM " +
                           table() + ")) FROM " + table() +
                           " WHERE status = 'pending') WHERE outbox_table = $1",
                       {config.table});
        });
    }

    // Takes or renews the lease in `tx`; false when another relay holds it. With `through`
    // (PostgreSQL), also stores the cursor.
    bool hold_lease(stores::Transaction& tx, std::optional<int64_t> through = std::nullopt) {
        const int64_t now = epoch_ms();
        lease_until = Clock::now() + config.lease;  // at the latest: set below if we hold it
        const std::string cursor =
            through && by_cursor() ? ", sent_through = " + std::to_string(*through) : "";
        auto r =
            tx.execute(std::string("UPDATE ") + relays_table + " SET owner = " + p(1) +
                           ", expires_at = " + p(2) + cursor + " WHERE outbox_table = " + p(3) +
                           " AND (owner = " + p(4) + " OR expires_at < " + p(5) + ")",
                       {owner, now + config.lease.count(), config.table, owner, now});
        if (r.changes != 1) lease_until = Clock::time_point{};
        return r.changes == 1;
    }

    // A clean shutdown hands the lease over at once: a standby need not wait for it to run
    // out. Trouble here (the database gone) only leaves it to run out.
    void release_lease() noexcept {
        if (!leader) return;
        leader = false;
        try {
            in_transaction([&](stores::Transaction& tx) {
                tx.execute(std::string("UPDATE ") + relays_table +
                               " SET expires_at = 0 WHERE outbox_table = " + p(1) +
                               " AND owner = " + p(2),
                           {config.table, owner});
            });
        } catch (const std::exception& e) {
            log(3, "lease-kept",
                std::string("could not hand the lease over: ") + e.what() +
                    "; it runs out after the lease time");
        }
    }

    // Until when this relay surely holds the lease (its own clock; renewed with every mark).
    Clock::time_point lease_until{};

    // Whether the lease must be renewed before the next batch: it is renewed in each batch's
    // marking transaction, so a busy relay reads its batches without writing (one commit, one
    // fsync per batch).
    // How long one relay_once() keeps reading batches while the outbox has more.
    static constexpr milliseconds round_time{1'000};

    bool lease_needs_renewal() const { return Clock::now() + config.lease / 2 > lease_until; }

    kafka::Producer& the_producer() {
        if (!producer) {
            kafka::ProducerConfig pc;
            pc.broker_url = config.broker_url;
            pc.client_id = "postroom-outbox-relay";
            pc.linger = milliseconds(0);  // a batch is queued at once: send it at once
            pc.properties = config.producer_properties;
            pc.properties.emplace("message.timeout.ms",
                                  std::to_string(config.publish_timeout.count()));
            pc.properties.emplace("message.max.bytes",
                                  std::to_string(config.max_message_bytes + 4096));
            // A topic that does not exist fails its rows after 2 s, not the default 30 s.
            pc.properties.emplace("topic.metadata.propagation.max.ms", "2000");
            producer = std::make_unique<kafka::Producer>(pc);
        }
        return *producer;
    }

    struct Pending {
        int64_t seq;
        std::string id, aggregate_id, topic;
        std::optional<OutgoingMessage> message;  // nullopt: cannot be published
        std::string error;
    };

    // The routing's extra columns of a row read from `from` on, as text.
    std::vector<std::optional<std::string>> extras_of(std::vector<SqlValue>& r,
                                                      std::size_t from) const {
        std::vector<std::optional<std::string>> extras;
        for (std::size_t i = from; i < r.size(); ++i) extras.push_back(take_text(r[i]));
        return extras;
    }

    // r: seq, id, aggregatetype, aggregateid, type, payload, headers, topic, then (from
    // `extras_from` on) the routing's extra columns.
    Pending to_pending(std::vector<SqlValue>&& r, std::size_t extras_from) {
        Pending row{int_of(r[0]),
                    take_text(r[1]).value_or(""),
                    take_text(r[3]).value_or(""),
                    {},
                    std::nullopt,
                    {}};
        const auto extras = extras_of(r, extras_from);
        row.topic = router.topic(take_text(r[7]), take_text(r[2]), extras);
        try {
            Event e(row.id, config.source, take_text(r[4]).value_or(""));
            e.data = take_text(r[5]);
            const auto* headers = std::get_if<std::string>(&r[6]);
            read_headers(headers ? std::string_view(*headers) : std::string_view("{}"),
                         [&e](std::string_view k, std::string_view v) {
                             if (k == "source")
                                 e.source = v;
                             else if (k == "datacontenttype")
                                 e.datacontenttype = v;
                             else if (k == "subject")
                                 e.subject = v;
                             else if (k == "time")
                                 e.time = v;
                             else if (k == "dataschema")
                                 e.dataschema = v;
                             else
                                 e.extensions[std::string(k)] = v;
                         });
            auto m = kafka::to_message(e, row.topic, row.aggregate_id);  // validates the event
            router.add_headers(m, row.id, extras);
            const std::size_t size = (m.value ? m.value->size() : 0) + m.key->size();
            if (size > config.max_message_bytes)
                throw CodecError("data", "the event is " + std::to_string(size) +
                                             " bytes, over max_message_bytes (" +
                                             std::to_string(config.max_message_bytes) + ")");
            row.message = std::move(m);
        } catch (const Error& e) {
            row.error = e.what();
        }
        return row;
    }

    std::optional<Clock::time_point> last_purge;

    // The retention: deletes old sent rows when due. Only the lease holder does it.
    void purge_if_due() {
        if (config.retention.count() <= 0) return;
        if (last_purge && Clock::now() - *last_purge < config.purge_interval) return;
        last_purge = Clock::now();
        const auto n = static_cast<int64_t>(delete_sent_older_than(config.retention));
        count([n](RelayCounters& c) { c.purged += n; });
    }

    std::size_t delete_sent_older_than(seconds age) {
        const int64_t before = epoch_ms() - duration_cast<milliseconds>(age).count();
        return in_transaction([&](stores::Transaction& tx) {
            if (by_cursor())
                return static_cast<std::size_t>(
                    tx.execute("DELETE FROM " + table() +
                                   " WHERE (status = 'sent' OR (status = 'pending' AND seq <= " +
                                   stored_cursor(2) + ")) AND COALESCE(sent_at, created_at) < $1",
                               {before, config.table})
                        .changes);
            return static_cast<std::size_t>(
                tx.execute(
                      "DELETE FROM " + table() + " WHERE status = 'sent' AND sent_at < " + p(1),
                      {before})
                    .changes);
        });
    }

    using SeqRange = std::pair<int64_t, int64_t>;

    // ---- PostgreSQL: the cursor ----
    // Every seq up to `sent_through` is settled (published, failed or never committed); the
    // relays table keeps it, renewed with the lease in each batch's marking transaction, so a
    // row is written only when it is published above a seq still open (then it is marked
    // sent, so a restart does not publish it again). Rows stay 'pending' below the cursor.
    //
    // Gap safety: a seq is taken after its transaction has an id (postroom_outbox_next_seq),
    // so a seq missing below a row the read sees belongs to a transaction the read's snapshot
    // lists as running, or to none (rolled back, deleted). Such a gap is read again once all
    // of those transactions have ended; until then the cursor stays below it.
    struct Snapshot {
        uint64_t xmin = 0, xmax = 0;
        std::vector<uint64_t> running;
        bool ended(uint64_t x) const {
            return x < xmin ||
                   (x < xmax && std::find(running.begin(), running.end(), x) == running.end());
        }
        static Snapshot parse(const std::string& text) {  // "xmin:xmax:x1,x2,..."
            Snapshot s;
            const auto a = text.find(':'), b = text.find(':', a + 1);
            if (a == std::string::npos || b == std::string::npos)
                throw TransportError("unexpected snapshot from PostgreSQL: '" + text + "'",
                                     Retriable::no);
            s.xmin = std::stoull(text.substr(0, a));
            s.xmax = std::stoull(text.substr(a + 1, b - a - 1));
            for (std::size_t at = b + 1; at < text.size();) {
                auto end = text.find(',', at);
                if (end == std::string::npos) end = text.size();
                s.running.push_back(std::stoull(text.substr(at, end - at)));
                at = end + 1;
            }
            return s;
        }
    };
    // Seqs missing below a row that was read. Each belongs to a transaction that was running
    // when it was read, or to none (rolled back, deleted): a transaction takes its xid before
    // its seq. Running were those the read's snapshot lists, and those whose xid is at or
    // above the snapshot's xmax (a snapshot does not list them): up to an xid taken after
    // the read.
    struct Gap {
        int64_t lo, hi;
        std::vector<uint64_t> waits_for;         // listed as running by the read's snapshot
        uint64_t xids_from = 0, xids_below = 0;  // and every xid in [xids_from, xids_below)
        bool ready = false;                      // they have all ended: read the range again
        bool ended(const Snapshot& now) const {
            if (!std::all_of(waits_for.begin(), waits_for.end(),
                             [&](uint64_t x) { return now.ended(x); }))
                return false;
            for (uint64_t x = std::max(xids_from, now.xmin); x < xids_below; ++x)
                if (!now.ended(x)) return false;
            return true;
        }
        Gap part(int64_t from, int64_t to, bool is_ready) const {
            Gap g = *this;
            g.lo = from;
            g.hi = to;
            g.ready = is_ready;
            return g;
        }
    };
    struct CursorState {
        int64_t read_from = 0;  // every seq up to it was read (or is in `gaps`)
        std::vector<Gap> gaps;
    };
    bool by_cursor() const { return dialect == Dialect::postgres; }
    bool cursor_loaded = false;
    int64_t sent_through = 0;
    CursorState cursor;  // where reading stands (a read ahead works on a copy)

    // The stored cursor as an SQL expression; the table's name is parameter `param`.
    static std::string stored_cursor(int param = 1) {
        return std::string("(SELECT COALESCE(MAX(sent_through), 0) FROM ") + relays_table +
               " WHERE outbox_table = $" + std::to_string(param) + ")";
    }

    void load_cursor(stores::Transaction& tx) {
        auto r = tx.execute(std::string("SELECT COALESCE(sent_through, 0) FROM ") + relays_table +
                                " WHERE outbox_table = $1",
                            {config.table});
        sent_through = r.rows.empty() ? 0 : int_of(r.rows[0][0]);
        cursor = {sent_through, {}};
        cursor_loaded = true;
    }

    // The next rows after the cursor's read position, in seq order, and the rows of gaps
    // whose transactions have ended. Rows already settled (marked sent or failed above the
    // cursor) are passed over. Moves `at` past what it read.
    std::vector<Pending> read_by_cursor(stores::Transaction& tx, CursorState& at) {
        // Follow the primary key in seq order even while the table's statistics are stale (a
        // backlog just written): sorting the whole backlog for every batch makes each read
        // cost as much as the backlog is long.
        tx.execute("SET LOCAL enable_sort = off");
        if (!at.gaps.empty()) {
            auto r = tx.execute("SELECT pg_current_snapshot()::text");
            const auto now = Snapshot::parse(text_of(r.rows.at(0).at(0)).value_or(""));
            for (auto& g : at.gaps) g.ready = g.ready || g.ended(now);
        }
        // An xid newer than every one taken before the read: this transaction's own, taken
        // once a read finds a gap (its commit need not wait for the disk).
        std::optional<uint64_t> own_xid;
        auto xid_after_read = [&] {
            if (!own_xid) {
                auto r = tx.execute(
                    "SELECT set_config('synchronous_commit', 'off', true), "
                    "pg_current_xact_id()::text");
                own_xid = std::stoull(text_of(r.rows.at(0).at(1)).value_or("0"));
            }
            return *own_xid;
        };
        std::vector<Pending> rows;
        for (;;) {
            // Every gap is read: a row committed in one whose transactions have not all
            // ended is published now, before the rows after it (per-aggregate order).
            int64_t from = at.read_from;
            std::string ranges;
            for (const auto& g : at.gaps) {
                from = std::min(from, g.lo - 1);
                ranges +=
                    " OR seq BETWEEN " + std::to_string(g.lo) + " AND " + std::to_string(g.hi);
            }
            const std::size_t limit = config.batch_size - rows.size();
            auto r = tx.execute(
                "SELECT seq, id, aggregatetype, aggregateid, type, payload, headers, topic, "
                "status, (SELECT pg_current_snapshot()::text)" +
                router.extra_select() + " FROM " + table() + " WHERE seq > " +
                std::to_string(from) + " AND (seq > " + std::to_string(at.read_from) + ranges +
                ") ORDER BY seq LIMIT " + std::to_string(limit));
            const bool full = r.rows.size() == limit;
            const int64_t last = r.rows.empty() ? at.read_from : int_of(r.rows.back()[0]);
            // The part of each gap the read covered: settled if the gap is ready, else it
            // stays open without the seqs found. The rest is read next time.
            std::vector<int64_t> found;
            for (const auto& row : r.rows)
                if (int_of(row[0]) <= at.read_from) found.push_back(int_of(row[0]));
            std::vector<Gap> open;
            for (auto& g : at.gaps) {
                const int64_t covered = full ? std::min(g.hi, last) : g.hi;
                if (covered >= g.lo && !g.ready) {
                    int64_t lo = g.lo;
                    for (auto seq : found)
                        if (seq >= lo && seq <= covered) {
                            if (seq > lo) open.push_back(g.part(lo, seq - 1, false));
                            lo = seq + 1;
                        }
                    if (lo <= covered) open.push_back(g.part(lo, covered, false));
                }
                if (covered < g.hi)
                    open.push_back(g.part(std::max(g.lo, covered + 1), g.hi, g.ready));
            }
            at.gaps = std::move(open);
            if (!r.rows.empty()) {
                const auto snapshot = Snapshot::parse(text_of(r.rows[0][9]).value_or(""));
                int64_t previous = at.read_from;
                for (auto& row : r.rows) {
                    const int64_t seq = int_of(row[0]);
                    if (seq > at.read_from) {
                        if (seq > previous + 1) {
                            // With no transaction running, a missing seq will never appear.
                            const uint64_t below = xid_after_read();
                            if (!snapshot.running.empty() || below > snapshot.xmax)
                                at.gaps.push_back({previous + 1, seq - 1, snapshot.running,
                                                   snapshot.xmax, below, false});
                        }
                        previous = seq;
                    }
                    if (is_text(row[8], "pending")) rows.push_back(to_pending(std::move(row), 10));
                }
                at.read_from = std::max(at.read_from, previous);
            }
            // Another read would need an xid newer than its own snapshot: this transaction's
            // serves only the reads before it was taken.
            if (!full || rows.size() >= config.batch_size || own_xid) return rows;
        }
    }

    // The next rows to publish. SQLite: the pending rows in seq order, leaving out the seq
    // ranges of the batches still in flight (published, not yet marked); SQLite commits one
    // writing transaction at a time, so no row commits late inside such a range.
    std::vector<Pending> select_batch(stores::Transaction& tx,
                                      const std::vector<SeqRange>& in_flight) {
        if (by_cursor()) return read_by_cursor(tx, cursor);
        std::string skip;
        for (const auto& [lo, hi] : in_flight)
            skip += " AND seq NOT BETWEEN " + std::to_string(lo) + " AND " + std::to_string(hi);
        auto r =
            tx.execute("SELECT seq, id, aggregatetype, aggregateid, type, payload, headers, topic" +
                       router.extra_select() + " FROM " + table() + " WHERE status = 'pending'" +
                       skip + " ORDER BY seq LIMIT " + std::to_string(config.batch_size));
        std::vector<Pending> rows;
        rows.reserve(r.rows.size());
        for (auto& row : r.rows) rows.push_back(to_pending(std::move(row), 8));
        return rows;
    }

    // A batch on its way to the broker.
    struct Flight {
        explicit Flight(std::vector<Pending> r) : rows(std::move(r)) {}
        std::vector<Pending> rows;
        std::vector<std::size_t> index;                  // message position -> rows position
        std::shared_ptr<kafka::BatchDelivery> delivery;  // Kafka; Redis answers at once
        std::vector<int64_t> sent;
        std::vector<std::pair<int64_t, std::string>> failed;
        bool trouble = false, recreate_producer = false;
        std::string why;

        SeqRange range() const { return {rows.front().seq, rows.back().seq}; }
    };

    // Hands the batch's publishable rows to the broker. Redis acknowledges (or refuses) each
    // add at once; Kafka's acknowledgements are collected by settle().
    void publish(Flight& f) {
        std::vector<OutgoingMessage> batch;
        for (std::size_t i = 0; i < f.rows.size(); ++i)
            if (f.rows[i].message) {
                f.index.push_back(i);
                batch.push_back(std::move(*f.rows[i].message));
                f.rows[i].message.reset();
            }
        if (batch.empty()) return;
        if (!to_redis) {
            f.delivery = the_producer().produce_batch(std::move(batch));
            return;
        }
        try {
            if (!stream_producer)
                stream_producer =
                    std::make_unique<redis::StreamProducer>(redis::StreamProducerConfig{
                        config.broker_url, std::nullopt, config.publish_timeout});
            auto results = stream_producer->add_batch(batch);
            for (std::size_t k = 0; k < results.size(); ++k) {
                auto& row = f.rows[f.index[k]];
                if (results[k].ok())
                    f.sent.push_back(row.seq);
                else
                    f.failed.emplace_back(row.seq, "Redis refused it: " + results[k].error);
            }
        } catch (const Error& e) {
            f.trouble = true;  // any of them may have been added: all are sent again
            f.why = e.what();
            f.sent.clear();
            f.failed.clear();
        }
    }

    // Waits for the batch's acknowledgements (Kafka), renewing the lease meanwhile so it can
    // stay short however long the broker takes, and sorts the rows into sent and failed. At
    // the first row with a retriable error the batch stops: that row and all after it (in
    // this batch and the next) stay pending and are published again, in order.
    void settle(Flight& f) {
        if (f.delivery) {
            auto& prod = the_producer();
            const auto give_up = Clock::now() + config.publish_timeout + seconds(5);
            auto renew_at = Clock::now() + config.lease / 3;
            while (!prod.wait(*f.delivery, std::min<milliseconds>(config.lease / 3, seconds(1)))) {
                if (Clock::now() > give_up) {
                    f.trouble = true;
                    f.why = "no acknowledgement within the publish timeout";
                    break;
                }
                if (Clock::now() >= renew_at) {
                    renew_at = Clock::now() + config.lease / 3;
                    if (!in_transaction([&](stores::Transaction& tx) { return hold_lease(tx); })) {
                        f.trouble = true;
                        f.why = "the lease was lost while waiting for the broker";
                        break;
                    }
                }
            }
            const auto& reports = f.delivery->reports();
            for (std::size_t k = 0; k < reports.size() && !f.trouble; ++k) {
                const auto& rep = reports[k];
                const auto& row = f.rows[f.index[k]];
                if (rep.ok()) {
                    f.sent.push_back(row.seq);
                } else if (rep.error_code == RD_KAFKA_RESP_ERR__FATAL) {
                    f.trouble = true;  // the producer's fault, not the row's
                    f.why = rep.error_message() + " (the producer is recreated)";
                    f.recreate_producer = true;
                } else if (rep.retriable() == Retriable::no) {
                    f.failed.emplace_back(row.seq, "the broker refused it: " + rep.error_message());
                } else {
                    f.trouble = true;
                    f.why = rep.error_message();
                }
            }
        }
        for (const auto& row : f.rows)
            if (!row.error.empty()) f.failed.emplace_back(row.seq, row.error);
        if (!f.sent.empty()) runtime::detail::crash_point("outbox-after-ack");
    }

    // A batch in flight that will not be marked: its rows stay pending and are published
    // again. Waits briefly for its deliveries, so the producer is not left busy with them.
    void let_go(const Flight& f) {
        if (f.delivery) the_producer().wait(*f.delivery, seconds(5));
    }

    // Marks a settled batch in `tx` (which holds the lease). With the cursor (PostgreSQL),
    // only the sent rows above `through` are marked: the cursor settles the others.
    void mark(stores::Transaction& tx, const Flight& f, int64_t through) {
        if (dialect == Dialect::postgres)
            // A mark lost in a database crash only publishes its rows once more (consumers
            // dedupe on the event id), so the relay does not wait for the WAL flush.
            tx.execute("SET LOCAL synchronous_commit = off");
        std::string list;
        for (auto s : f.sent)
            if (!by_cursor() || config.delete_sent || s > through)
                list += (list.empty() ? "" : ",") + std::to_string(s);
        if (!list.empty()) {
            if (config.delete_sent)
                tx.execute("DELETE FROM " + table() + " WHERE seq IN (" + list + ")");
            else
                tx.execute("UPDATE " + table() + " SET status = 'sent', sent_at = " + p(1) +
                               ", attempts = attempts + 1 WHERE seq IN (" + list + ")",
                           {epoch_ms()});
        }
        for (const auto& [seq, error] : f.failed)
            tx.execute("UPDATE " + table() +
                           " SET status = 'failed', attempts = attempts + 1, error = " + p(1) +
                           " WHERE seq = " + p(2),
                       {error, seq});
    }

    void note_leading(bool leading) {
        if (leading == leader) return;
        leader = leading;
        log(4, leading ? "lease-taken" : "standby",
            leading ? "this relay publishes the outbox"
                    : "another relay holds the lease; waiting to take over");
    }

    static std::vector<SeqRange> ranges(const std::deque<Flight>& flights) {
        std::vector<SeqRange> out;
        for (const auto& f : flights) out.push_back(f.range());
        return out;
    }

    // One relay round, pipelined: while one batch waits for the broker, the one before it is
    // marked (on its own database connection, PostgreSQL's pool) and the next one is read
    // and published. Rows go out in seq order on one idempotent producer, so per-aggregate
    // order holds. The round ends when the outbox is drained, after `round_time`, or on
    // stop(); every batch it published is settled and marked (or left pending) before it
    // returns.
    std::size_t relay_once() {
        try {
            return relay_round();
        } catch (...) {
            cursor_loaded = false;  // read again from the stored cursor
            throw;
        }
    }

    // The cursor once the front flight is marked: below the first seq still open (a row of a
    // later flight, a row of this one neither sent nor failed, a gap).
    int64_t cursor_after(const std::deque<Flight>& flights) const {
        int64_t through = cursor.read_from;
        for (const auto& g : cursor.gaps) through = std::min(through, g.lo - 1);
        for (std::size_t i = 1; i < flights.size(); ++i)
            if (!flights[i].rows.empty())
                through = std::min(through, flights[i].rows.front().seq - 1);
        const auto& f = flights.front();
        std::vector<int64_t> settled = f.sent;
        for (const auto& failed : f.failed) settled.push_back(failed.first);
        std::sort(settled.begin(), settled.end());
        for (const auto& row : f.rows)
            if (!std::binary_search(settled.begin(), settled.end(), row.seq)) {
                through = std::min(through, row.seq - 1);
                break;
            }
        return std::max(through, sent_through);
    }

    std::size_t relay_round() {
        const auto round_ends = Clock::now() + round_time;
        std::vector<Pending> first;
        const bool fresh = !leader || Clock::now() >= lease_until;
        const bool leading = in_transaction([&](stores::Transaction& tx) {
            if ((fresh || lease_needs_renewal()) && !hold_lease(tx)) return false;
            if (by_cursor() && (fresh || !cursor_loaded)) load_cursor(tx);
            first = select_batch(tx, {});
            // Idle, its gaps closed: the cursor catches up with what was read.
            if (by_cursor() && first.empty() && cursor.gaps.empty() &&
                cursor.read_from > sent_through) {
                if (!hold_lease(tx, cursor.read_from)) return false;
                sent_through = cursor.read_from;
            }
            return true;
        });
        note_leading(leading);
        if (!leading) {
            count([](RelayCounters& c) { ++c.standby_waits; });
            return 0;
        }
        // A leading relay connects its producer at once, even with nothing to publish yet:
        // the first batch then need not wait for the broker's metadata and producer id.
        if (!to_redis) the_producer();
        purge_if_due();
        if (first.empty()) return 0;

        std::deque<Flight> flights;
        bool more = first.size() == config.batch_size;
        flights.emplace_back(std::move(first));
        publish(flights.back());
        if (more && !stop_requested.load()) {
            // The second batch, read while the first is on its way.
            auto next = in_transaction(
                [&](stores::Transaction& tx) { return select_batch(tx, ranges(flights)); });
            more = next.size() == config.batch_size;
            if (!next.empty()) {
                flights.emplace_back(std::move(next));
                publish(flights.back());
            }
        }
        // PostgreSQL: the batch after those is read on another connection, on a copy of the
        // cursor's state, while they are settled and recorded. Its rows are all above what
        // the cursor may pass until they are in flight (above `read_from`, or in a gap).
        struct ReadAhead {
            std::vector<Pending> rows;
            CursorState state;
        };
        std::future<ReadAhead> ahead;
        auto read_ahead = [&] {
            if (!by_cursor() || !more || stop_requested.load() || Clock::now() >= round_ends)
                return;
            ahead = std::async(std::launch::async, [this, at = cursor]() mutable {
                auto rows =
                    in_transaction([&](stores::Transaction& tx) { return read_by_cursor(tx, at); });
                return ReadAhead{std::move(rows), std::move(at)};
            });
        };
        read_ahead();

        std::size_t done = 0;
        bool trouble = false, recreate = false;
        std::string why;
        while (!flights.empty()) {
            auto& f = flights.front();
            if (!trouble) {
                settle(f);
                if (f.trouble) {
                    // Nothing after this batch's first failing row is marked; the rows after
                    // it that were published are published again, in order.
                    trouble = true;
                    why = f.why;
                    recreate = f.recreate_producer;
                }
            } else {
                f.sent.clear();
                f.failed.clear();
                let_go(f);
            }
            // Mark this batch (if the lease is still ours; otherwise the new leader publishes
            // its rows again) while the next one is read.
            const int64_t through = by_cursor() ? cursor_after(flights) : 0;
            auto marking = std::async(std::launch::async, [this, &f, through] {
                return in_transaction([&](stores::Transaction& tx) {
                    if (!hold_lease(tx, through)) return false;
                    mark(tx, f, through);
                    return true;
                });
            });
            std::vector<Pending> next;
            if (by_cursor()) {
                if (ahead.valid()) {
                    auto read = ahead.get();
                    if (!trouble) {
                        cursor = std::move(read.state);
                        next = std::move(read.rows);
                    }
                }
                more = more && !trouble && !next.empty();
                // The batch after `next` is read while this one is marked and `next` is
                // published: its rows are above `next`'s, which are in flight before the
                // next mark.
                if (more && next.size() == config.batch_size) read_ahead();
            } else if (more && !trouble && !stop_requested.load() && Clock::now() < round_ends) {
                next = in_transaction(
                    [&](stores::Transaction& tx) { return select_batch(tx, ranges(flights)); });
            } else {
                more = false;
            }
            if (!marking.get()) {
                log(3, "lease-lost",
                    "another relay took over before this batch was marked; it publishes the "
                    "batch again (consumers dedupe on the event id)");
                leader = false;
                for (std::size_t i = 1; i < flights.size(); ++i) let_go(flights[i]);
                return done;
            }
            if (by_cursor()) sent_through = through;
            runtime::detail::crash_point("outbox-after-mark");
            for (const auto& [seq, error] : f.failed)
                log(3, "row-failed",
                    "row " + std::to_string(seq) + ": " + error +
                        " (fix it, then requeue the failed rows)");
            count([&](RelayCounters& c) {
                c.published += static_cast<int64_t>(f.sent.size());
                c.failed += static_cast<int64_t>(f.failed.size());
                ++c.batches;
            });
            done += f.sent.size() + f.failed.size();
            flights.pop_front();
            if (more) {
                more = next.size() == config.batch_size;
                if (!next.empty()) {
                    flights.emplace_back(std::move(next));
                    publish(flights.back());
                }
            }
        }
        if (recreate) producer.reset();
        if (trouble)
            throw TransportError(
                "publishing the outbox: " + why + "; the rest of the batch stays pending",
                Retriable::yes);
        return done;
    }

    // PostgreSQL: a connection LISTENing on the table's channel, so an insert wakes the
    // relay instead of the next poll. Dropped (and polled meanwhile) when it fails.
    std::unique_ptr<PGconn, void (*)(PGconn*)> listener{nullptr, PQfinish};
    Clock::time_point listener_retry{};

    bool listening() {
        if (dialect != Dialect::postgres) return false;
        if (listener && PQstatus(listener.get()) == CONNECTION_OK) return true;
        if (Clock::now() < listener_retry) return false;
        listener.reset(PQconnectdb(config.database_url.c_str()));
        PQsetNoticeProcessor(
            listener.get(), [](void*, const char*) {}, nullptr);
        PGresult* r = nullptr;
        if (PQstatus(listener.get()) == CONNECTION_OK)
            r = PQexec(listener.get(), ("LISTEN " + table()).c_str());
        const bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
        if (r) PQclear(r);
        if (!ok) {
            log(3, "listen-failed",
                redact_secrets(PQerrorMessage(listener.get()), config.database_url) +
                    "; polling every " + std::to_string(config.poll_interval.count()) +
                    " ms meanwhile");
            listener.reset();
            listener_retry = Clock::now() + seconds(5);
        }
        return ok;
    }

    // Waits up to `d` for a notification (PostgreSQL) or just `d`; false when stopping.
    bool wait_for_rows(milliseconds d) {
        if (!listening()) return wait_for(d);
        auto until = Clock::now() + d;
        while (!stop_requested.load()) {
            auto left = duration_cast<milliseconds>(until - Clock::now());
            if (left.count() <= 0) return true;
            const int fd = PQsocket(listener.get());
            fd_set set;
            FD_ZERO(&set);
            FD_SET(fd, &set);
            timeval tv{0, static_cast<suseconds_t>(std::min<int64_t>(left.count(), 100) * 1000)};
            if (select(fd + 1, &set, nullptr, nullptr, &tv) > 0) {
                if (!PQconsumeInput(listener.get())) {
                    listener.reset();  // reconnects (or polls) next time
                    return true;
                }
                bool notified = false;
                while (PGnotify* n = PQnotifies(listener.get())) {
                    notified = true;
                    PQfreemem(n);
                }
                if (notified) return true;
            }
            if (config.on_wait) config.on_wait();
        }
        return false;
    }

    bool wait_for(milliseconds d) {
        auto until = Clock::now() + d;
        while (!stop_requested.load()) {
            auto left = until - Clock::now();
            if (left <= Clock::duration::zero()) return true;
            std::this_thread::sleep_for(std::min<Clock::duration>(left, milliseconds(100)));
            if (config.on_wait) config.on_wait();
        }
        return false;
    }
};

Outbox::Outbox(OutboxConfig config) : impl_(std::make_unique<Impl>()) {
    auto& c = config;
    if (!stores::is_valid_table_name(c.table))
        throw ConfigurationError("outbox table name '" + c.table +
                                 "' is not allowed: use letters, digits and '_', starting with a "
                                 "letter or '_', at most 63 bytes (PostgreSQL's limit)");
    if (c.batch_size == 0) throw ConfigurationError("outbox batch_size must be positive");
    if (c.lease < milliseconds(300))
        throw ConfigurationError("outbox lease must be at least 0.3 s (default 5 s)");
    const std::string& url = c.database_url;
    if (url.rfind("sqlite://", 0) == 0) {
        impl_->dialect = Dialect::sqlite;
    } else if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) {
        impl_->dialect = Dialect::postgres;
    } else {
        throw ConfigurationError("outbox database URL '" + redacted_url(url) +
                                 "' is not supported: use sqlite:///path.db or postgresql://...");
    }
    impl_->router = detail::RowRouter(c.routing, c.topic);  // validated before the database
    impl_->to_redis = parse_broker_url(config.broker_url).scheme == BrokerScheme::redis;
    impl_->db = stores::open_database(url);
    impl_->config = std::move(config);
    impl_->migrate();
}

Outbox::~Outbox() {
    if (impl_) {
        try {
            close();
        } catch (...) {
            // Destructors do not throw; close() explicitly to see errors.
        }
    }
}

Outbox::Outbox(Outbox&&) noexcept = default;
Outbox& Outbox::operator=(Outbox&&) noexcept = default;

Dialect Outbox::dialect() const noexcept {
    return impl_->dialect;
}

PayloadColumn Outbox::payload_column() const noexcept {
    return impl_->payload_column;
}

const std::vector<std::string>& Outbox::added_columns() const noexcept {
    return impl_->added_columns;
}

const OutboxConfig& Outbox::config() const noexcept {
    return impl_->config;
}

std::shared_ptr<stores::IdempotencyStore> Outbox::database() const {
    return impl_->db;
}

std::size_t Outbox::relay_once() {
    return impl_->relay_once();
}

void Outbox::run() {
    auto& impl = *impl_;
    int round = 0;
    while (!impl.stop_requested.load()) {
        try {
            const auto n = impl.relay_once();
            round = 0;
            if (n < impl.config.batch_size && !impl.wait_for_rows(impl.config.poll_interval)) break;
        } catch (const ConfigurationError&) {
            throw;
        } catch (const Error& e) {
            impl.log(3, "relay-blocked", e.what());
            impl.count([](RelayCounters& c) { ++c.blocked_waits; });
            auto d = std::min<milliseconds>(milliseconds(100) * (1LL << std::min(round++, 10)),
                                            impl.config.blocked_backoff_max);
            if (!impl.wait_for(d)) break;
        }
    }
}

void Outbox::stop() noexcept {
    impl_->stop_requested.store(true);
}

bool Outbox::stopping() const noexcept {
    return impl_->stop_requested.load();
}

OutboxStatus Outbox::status() {
    auto& impl = *impl_;
    return impl.in_transaction([&](stores::Transaction& tx) {
        OutboxStatus s;
        // PostgreSQL: rows at or below the relay's cursor are sent, whatever their status.
        auto r = impl.by_cursor()
                     ? tx.execute("SELECT CASE WHEN status = 'pending' AND seq <= " +
                                      impl.stored_cursor() +
                                      " THEN 'sent' ELSE status END, COUNT(*), MIN(created_at) "
                                      "FROM " +
                                      impl.table() + " GROUP BY 1",
                                  {impl.config.table})
                     : tx.execute("SELECT status, COUNT(*), MIN(created_at) FROM " + impl.table() +
                                  " GROUP BY status");
        for (const auto& row : r.rows) {
            auto st = text_of(row[0]).value_or("");
            auto n = int_of(row[1]);
            if (st == "pending") {
                s.pending = n;
                if (n > 0)
                    s.oldest_pending_age_seconds =
                        static_cast<double>(epoch_ms() - int_of(row[2])) / 1000.0;
            } else if (st == "failed") {
                s.failed = n;
            } else if (st == "sent") {
                s.sent = n;
            }
        }
        auto f =
            tx.execute("SELECT seq, id, aggregateid, topic, aggregatetype, COALESCE(error, '')" +
                       impl.router.extra_select() + " FROM " + impl.table() +
                       " WHERE status = 'failed' ORDER BY seq LIMIT 100");
        for (auto& row : f.rows) {
            const auto extras = impl.extras_of(row, 6);
            auto topic = impl.router.topic(text_of(row[3]), text_of(row[4]), extras);
            s.failed_rows.push_back({int_of(row[0]), text_of(row[1]).value_or(""),
                                     text_of(row[2]).value_or(""), topic,
                                     text_of(row[5]).value_or("")});
        }
        return s;
    });
}

std::size_t Outbox::requeue_failed() {
    auto& impl = *impl_;
    return impl.in_transaction([&](stores::Transaction& tx) {
        // PostgreSQL: a new seq, so the cursor (long past them) reads them again.
        return static_cast<std::size_t>(
            tx.execute("UPDATE " + impl.table() + " SET status = 'pending', error = NULL" +
                       (impl.by_cursor() ? ", seq = DEFAULT" : "") + " WHERE status = 'failed'")
                .changes);
    });
}

std::size_t Outbox::purge_sent_older_than(seconds age) {
    return impl_->delete_sent_older_than(age);
}

RelayCounters Outbox::counters() const {
    std::lock_guard lock(impl_->counters_mutex);
    return impl_->counts;
}

void Outbox::close() {
    if (!impl_) return;
    impl_->stop_requested.store(true);
    impl_->release_lease();
    impl_->listener.reset();
    if (impl_->producer) {
        impl_->producer->close();
        impl_->producer.reset();
    }
    impl_->stream_producer.reset();
}

}  // namespace postroom::outbox
