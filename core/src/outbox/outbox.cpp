// The outbox: its public methods and the relay loop (a round of pipelined batches, the read
// ahead, waiting for rows with LISTEN). The rest lives beside it: schema.cpp (the tables and
// their migration), lease.cpp (the relay lease), cursor.cpp (PostgreSQL's gap-safe cursor),
// publisher.cpp (rows to messages, producers and flights), layout.cpp and routing.cpp.
//
// Over 500 lines: the public methods take about 200, and relay_round is one pipeline
// (publish, settle, mark, read the next batch, read ahead) whose steps interleave on the same
// flights; cutting it apart would scatter the ordering argument its comments make.

#include "postroom/outbox/outbox.hpp"

#include <libpq-fe.h>
#include <sys/select.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "../runtime/crash_points.hpp"
#include "common.hpp"
#include "cursor.hpp"
#include "lease.hpp"
#include "postroom/broker_url.hpp"
#include "postroom/error.hpp"
#include "postroom/redact.hpp"
#include "publisher.hpp"
#include "row_router.hpp"
#include "schema.hpp"

namespace postroom::outbox {

using namespace std::chrono;
using detail::Clock;
using detail::epoch_ms;
using detail::int_of;
using detail::placeholder;
using detail::quoted;
using detail::text_of;
using stores::SqlValue;

namespace {

SqlValue optional_text(const std::optional<std::string>& s) {
    return s ? SqlValue(*s) : SqlValue(std::monostate{});
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
    nlohmann::json h = nlohmann::json::object();  // its members in name order
    event.for_each_attribute([&h](std::string_view name, const std::string& value) {
        if (!detail::kept_out_of_headers(name)) h[std::string(name)] = value;
    });
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
    using Pending = detail::Pending;
    using Flight = detail::Flight;
    using SeqRange = detail::SeqRange;

    Impl(OutboxConfig c, Dialect d, detail::RowRouter r,
         std::shared_ptr<stores::IdempotencyStore> database, bool to_redis)
        : config(std::move(c)),
          dialect(d),
          db(std::move(database)),
          router(std::move(r)),
          publisher(config, to_redis) {
        auto schema = detail::migrate(*db, dialect, config, router);
        payload_column = schema.payload_column;
        added_columns = std::move(schema.added_columns);
    }

    OutboxConfig config;
    Dialect dialect = Dialect::sqlite;
    std::shared_ptr<stores::IdempotencyStore> db;
    detail::RowRouter router;
    detail::RowReader reader{config, router};
    detail::Lease lease{config, dialect};
    detail::Publisher publisher;
    detail::Cursor cursor{config, router, reader};  // PostgreSQL
    PayloadColumn payload_column = PayloadColumn::bytea;
    std::vector<std::string> added_columns;  // by `migrate`
    std::atomic<bool> stop_requested{false};
    mutable std::mutex counters_mutex;
    RelayCounters counts;

    std::string p(int n) const { return placeholder(dialect, n); }
    std::string table() const { return quoted(config.table); }
    bool by_cursor() const { return dialect == Dialect::postgres; }

    void log(int level, std::string_view what, const std::string& detail) {
        detail::log_line(config, lease.owner(), level, what, detail);
    }

    template <typename F>
    void count(F&& f) {
        std::lock_guard lock(counters_mutex);
        f(counts);
    }

    // Runs `f(transaction)` in one transaction and commits.
    template <typename F>
    auto in_transaction(F&& f) {
        return detail::in_transaction(*db, std::forward<F>(f));
    }

    // How long one relay_once() keeps reading batches while the outbox has more.
    static constexpr milliseconds round_time{1'000};

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
                                   detail::Cursor::stored(2) +
                                   ")) AND COALESCE(sent_at, created_at) < $1",
                               {before, config.table})
                        .changes);
            return static_cast<std::size_t>(
                tx.execute(
                      "DELETE FROM " + table() + " WHERE status = 'sent' AND sent_at < " + p(1),
                      {before})
                    .changes);
        });
    }

    // The next rows to publish. PostgreSQL: by the cursor (cursor.hpp). SQLite: the pending
    // rows in seq order, leaving out the seq ranges of the batches still in flight
    // (published, not yet marked); SQLite commits one writing transaction at a time, so no
    // row commits late inside such a range.
    std::vector<Pending> select_batch(stores::Transaction& tx,
                                      const std::vector<SeqRange>& in_flight) {
        if (by_cursor()) return cursor.read(tx, cursor.state);
        std::string skip;
        for (const auto& [lo, hi] : in_flight)
            skip += " AND seq NOT BETWEEN " + std::to_string(lo) + " AND " + std::to_string(hi);
        auto r =
            tx.execute("SELECT seq, id, aggregatetype, aggregateid, type, payload, headers, topic" +
                       router.extra_select() + " FROM " + table() + " WHERE status = 'pending'" +
                       skip + " ORDER BY seq LIMIT " + std::to_string(config.batch_size));
        std::vector<Pending> rows;
        rows.reserve(r.rows.size());
        for (auto& row : r.rows) rows.push_back(reader.pending(std::move(row), 8));
        return rows;
    }

    void publish(Flight& f) { publisher.publish(f); }

    // Settles the batch (publisher.hpp), renewing the lease while the broker takes its time.
    void settle(Flight& f) {
        publisher.settle(f, [this] {
            return in_transaction([&](stores::Transaction& tx) { return lease.hold(tx); });
        });
    }

    void let_go(const Flight& f) { publisher.let_go(f); }

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
            cursor.loaded = false;  // read again from the stored cursor
            throw;
        }
    }

    std::size_t relay_round() {
        const auto round_ends = Clock::now() + round_time;
        std::vector<Pending> first;
        const bool fresh = lease.fresh();
        const bool leading = in_transaction([&](stores::Transaction& tx) {
            if ((fresh || lease.needs_renewal()) && !lease.hold(tx)) return false;
            if (by_cursor() && (fresh || !cursor.loaded)) cursor.load(tx);
            first = select_batch(tx, {});
            // Idle, its gaps closed: the cursor catches up with what was read.
            if (by_cursor() && first.empty() && cursor.state.gaps.empty() &&
                cursor.state.read_from > cursor.sent_through) {
                if (!lease.hold(tx, cursor.state.read_from)) return false;
                cursor.sent_through = cursor.state.read_from;
            }
            return true;
        });
        lease.note_leading(leading);
        if (!leading) {
            count([](RelayCounters& c) { ++c.standby_waits; });
            return 0;
        }
        // A leading relay connects its producer at once, even with nothing to publish yet:
        // the first batch then need not wait for the broker's metadata and producer id.
        if (!publisher.to_redis()) publisher.producer();
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
            detail::CursorState state;
        };
        std::future<ReadAhead> ahead;
        auto read_ahead = [&] {
            if (!by_cursor() || !more || stop_requested.load() || Clock::now() >= round_ends)
                return;
            ahead = std::async(std::launch::async, [this, at = cursor.state]() mutable {
                auto rows =
                    in_transaction([&](stores::Transaction& tx) { return cursor.read(tx, at); });
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
            const int64_t through = by_cursor() ? cursor.after(flights) : 0;
            auto marking = std::async(std::launch::async, [this, &f, through] {
                return in_transaction([&](stores::Transaction& tx) {
                    if (!lease.hold(tx, through)) return false;
                    mark(tx, f, through);
                    return true;
                });
            });
            std::vector<Pending> next;
            if (by_cursor()) {
                if (ahead.valid()) {
                    auto read = ahead.get();
                    if (!trouble) {
                        cursor.state = std::move(read.state);
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
                lease.lost();
                for (std::size_t i = 1; i < flights.size(); ++i) let_go(flights[i]);
                return done;
            }
            if (by_cursor()) cursor.sent_through = through;
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
        if (recreate) publisher.recreate();
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

Outbox::Outbox(OutboxConfig config) {
    auto& c = config;
    if (!stores::is_valid_table_name(c.table))
        throw ConfigurationError("outbox table name '" + c.table +
                                 "' is not allowed: use letters, digits and '_', starting with a "
                                 "letter or '_', at most 63 bytes (PostgreSQL's limit)");
    if (c.batch_size == 0) throw ConfigurationError("outbox batch_size must be positive");
    if (c.lease < milliseconds(300))
        throw ConfigurationError("outbox lease must be at least 0.3 s (default 5 s)");
    const std::string& url = c.database_url;
    Dialect dialect = Dialect::sqlite;
    if (url.rfind("sqlite://", 0) == 0) {
        dialect = Dialect::sqlite;
    } else if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) {
        dialect = Dialect::postgres;
    } else {
        throw ConfigurationError("outbox database URL '" + redacted_url(url) +
                                 "' is not supported: use sqlite:///path.db or postgresql://...");
    }
    detail::RowRouter router(c.routing, c.topic);  // validated before the database
    const bool to_redis = parse_broker_url(config.broker_url).scheme == BrokerScheme::redis;
    auto db = stores::open_database(url);
    // Creates or migrates the tables (schema.cpp).
    impl_ = std::make_unique<Impl>(std::move(config), dialect, std::move(router), std::move(db),
                                   to_redis);
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
                                      detail::Cursor::stored() +
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
            const auto extras = impl.reader.extras(row, 6);
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
    impl_->lease.release(*impl_->db);
    impl_->listener.reset();
    impl_->publisher.close();
}

}  // namespace postroom::outbox
