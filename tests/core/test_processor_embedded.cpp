// The idempotent consumer runtime on the embedded broker.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_set>

#include "postroom/binding.hpp"
#include "postroom/embedded/broker.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/consumer.hpp"
#include "postroom/kafka/producer.hpp"
#include "postroom/runtime/dead_letter.hpp"
#include "postroom/runtime/processor.hpp"

using namespace postroom;
using namespace postroom::kafka;
using namespace postroom::cloudevents;
using namespace postroom::runtime;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct EmbeddedProcessor : ::testing::Test {
    static inline std::atomic<int> counter{0};
    // Unique across processes too: ctest runs each test in its own process, in parallel.
    std::string name = "proc-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    std::string url = "embedded://" + name;
    std::shared_ptr<embedded::Broker> broker = embedded::Broker::shared(name);

    void SetUp() override {
        broker->create_topic("orders", 1);
        broker->create_topic("orders.dlq", 1);
    }

    ProcessorConfig config() {
        ProcessorConfig c;
        c.name = "billing";
        c.broker_url = url;
        c.topics = {"orders"};
        c.retry.initial_delay = 50ms;
        c.retry.max_delay = 400ms;
        c.retry.max_attempts = 3;
        c.commit_interval = 0ms;
        c.log = [](int, const std::string&) {};
        return c;
    }

    Event event(int i) {
        Event e("event-" + std::to_string(i), "/test", "order.placed");
        e.datacontenttype = "application/json";
        e.data = "{\"n\":" + std::to_string(i) + "}";
        return e;
    }

    void send(const std::vector<OutgoingMessage>& messages) {
        ProducerConfig pc;
        pc.broker_url = url;
        Producer p(pc);
        p.send_batch(messages)->raise_for_failures();
    }

    void send_events(int from, int to) {
        std::vector<OutgoingMessage> out;
        for (int i = from; i < to; ++i)
            out.push_back(to_message(event(i), "orders", std::string("k")));
        send(out);
    }

    // A new SQLite store in the temporary directory, with one table made by `create_sql`.
    std::shared_ptr<stores::SqliteStore> fresh_sqlite_store(const std::string& suffix,
                                                            const std::string& create_sql) {
        auto path = std::filesystem::temp_directory_path() / (name + suffix + ".db");
        std::filesystem::remove(path);
        auto store = std::make_shared<stores::SqliteStore>(path.string());
        auto tx = store->begin();
        tx->execute(create_sql);
        tx->commit();
        return store;
    }

    // `n` events to a new `topic` of `partitions` partitions, spread round-robin; 8 keys.
    void send_across(const std::string& topic, int partitions, int n) {
        broker->create_topic(topic, partitions);
        std::vector<OutgoingMessage> out;
        for (int i = 0; i < n; ++i) {
            auto m = to_message(event(i), topic, std::string("k") + std::to_string(i % 8));
            m.partition = i % partitions;
            out.push_back(std::move(m));
        }
        send(out);
    }

    // A processor of `topic` on `concurrency` lanes, each queue bounded at `lane_queue`.
    ProcessorConfig lanes_config(const std::string& topic, std::size_t concurrency,
                                 std::size_t batch_size, std::size_t lane_queue) {
        auto c = config();
        c.topics = {topic};
        c.dead_letter_topic = "orders.dlq";
        c.concurrency = concurrency;
        c.batch_size = batch_size;
        c.lane_queue_messages = lane_queue;
        return c;
    }

    // Runs until `done()` or the deadline.
    template <typename Done>
    void run_until(Processor& p, Done done, std::chrono::seconds limit = 30s) {
        auto deadline = Clock::now() + limit;
        while (!done() && Clock::now() < deadline) p.run_once(100ms);
    }

    std::vector<Message> read_topic(const std::string& topic, std::size_t n) {
        ConsumerConfig cc;
        cc.broker_url = url;
        cc.group_id = "reader-" + std::to_string(++counter);
        Consumer c(cc);
        c.assign({{topic, 0, Consumer::offset_beginning}});
        std::vector<Message> got;
        auto deadline = Clock::now() + 20s;
        while (got.size() < n && Clock::now() < deadline)
            for (auto& m : c.poll_batch(n - got.size(), 200ms)) got.push_back(std::move(m));
        return got;
    }

    static std::string header(const Message& m, std::string_view name) {
        auto* h = find_header(m.headers, name);
        return h && h->value ? *h->value : "<missing>";
    }
};

}  // namespace

TEST_F(EmbeddedProcessor, TransientFailuresSucceedAndDelaysFollowTheSchedule) {
    send_events(0, 1);
    std::vector<Clock::time_point> calls;
    auto c = config();
    c.retry.max_attempts = 4;
    Processor p(c, [&](const Event&, HandlerContext& ctx) {
        calls.push_back(Clock::now());
        EXPECT_EQ(ctx.attempt, static_cast<int>(calls.size()));
        if (calls.size() < 3) throw std::runtime_error("transient");
    });
    run_until(p, [&] { return p.counters().processed == 1; });
    auto k = p.counters();
    EXPECT_EQ(k.processed, 1);
    EXPECT_EQ(k.retried, 2);
    EXPECT_EQ(k.failed_attempts, 2);
    EXPECT_EQ(k.dead_lettered, 0);
    ASSERT_EQ(calls.size(), 3u);
    for (int attempt = 2; attempt <= 3; ++attempt) {
        auto observed = std::chrono::duration_cast<std::chrono::milliseconds>(
            calls[static_cast<std::size_t>(attempt - 1)] -
            calls[static_cast<std::size_t>(attempt - 2)]);
        auto [lo, hi] = c.retry.bounds(attempt);
        EXPECT_GE(observed, lo) << "attempt " << attempt;
        EXPECT_LE(observed, hi + 150ms) << "attempt " << attempt << " (scheduling slack)";
    }
}

TEST_F(EmbeddedProcessor, PoisonEventIsDeadLetteredWithEveryHeaderAndTheRestFlows) {
    send_events(0, 10);
    std::vector<std::string> applied;
    Processor p(config(), [&](const Event& e, HandlerContext&) {
        if (e.id == "event-3")
            throw HandlerFailure("ValueError", "bad amount", "Traceback: ...", true);
        applied.push_back(e.id);
    });
    run_until(p, [&] { return p.counters().processed + p.counters().dead_lettered == 10; });
    EXPECT_EQ(applied.size(), 9u);
    for (std::size_t i = 1; i < applied.size(); ++i)
        EXPECT_LT(std::stoi(applied[i - 1].substr(6)), std::stoi(applied[i].substr(6))) << "order";
    auto k = p.counters();
    EXPECT_EQ(k.dead_lettered, 1);
    EXPECT_EQ(k.failed_attempts, 3);
    p.close();
    auto dlq = read_topic("orders.dlq", 1);
    ASSERT_EQ(dlq.size(), 1u);
    const auto& d = dlq[0];
    EXPECT_EQ(to_event(d).id, "event-3") << "the original event, intact";
    EXPECT_EQ(d.key, "k");
    EXPECT_EQ(header(d, dlt::reason), "retries-exhausted");
    EXPECT_EQ(header(d, dlt::error_type), "ValueError");
    EXPECT_EQ(header(d, dlt::error_message), "bad amount");
    EXPECT_EQ(header(d, dlt::error_stack), "Traceback: ...");
    EXPECT_EQ(header(d, dlt::original_topic), "orders");
    EXPECT_EQ(header(d, dlt::original_partition), "0");
    EXPECT_EQ(header(d, dlt::original_offset), "3");
    EXPECT_NE(header(d, dlt::original_timestamp), "<missing>");
    EXPECT_EQ(header(d, dlt::processor), "billing");
    EXPECT_EQ(header(d, dlt::group), "billing");
    EXPECT_EQ(header(d, dlt::attempts), "3");
    EXPECT_TRUE(is_rfc3339(header(d, dlt::first_failure)));
    EXPECT_TRUE(is_rfc3339(header(d, dlt::last_failure)));
}

TEST_F(EmbeddedProcessor, NonRetryableErrorSkipsRetries) {
    send_events(0, 1);
    int calls = 0;
    Processor p(config(), [&](const Event&, HandlerContext&) {
        ++calls;
        throw NonRetryableError("invalid order");
    });
    run_until(p, [&] { return p.counters().dead_lettered == 1; });
    EXPECT_EQ(calls, 1);
    p.close();
    auto dlq = read_topic("orders.dlq", 1);
    ASSERT_EQ(dlq.size(), 1u);
    EXPECT_EQ(header(dlq[0], dlt::reason), "non-retryable");
    EXPECT_EQ(header(dlq[0], dlt::attempts), "1");
}

TEST_F(EmbeddedProcessor, BadInputIsDeadLetteredWithAReasonAndNeverBlocks) {
    std::vector<OutgoingMessage> out;
    out.push_back({"orders", std::string("k"), std::string("not an event"), {}, std::nullopt});
    out.push_back({"orders",
                   std::string("k"),
                   std::string("{broken json"),
                   {{"content-type", std::string("application/cloudevents+json")}},
                   std::nullopt});
    out.push_back({"orders",
                   std::string("k"),
                   std::string(2000, 'x'),
                   {{"ce_specversion", std::string("1.0")}},
                   std::nullopt});
    out.push_back(to_message(event(1), "orders", std::string("k")));
    send(out);
    auto c = config();
    c.max_payload_bytes = 1000;
    int handled = 0;
    Processor p(c, [&](const Event&, HandlerContext&) { ++handled; });
    run_until(p, [&] { return p.counters().dead_lettered + p.counters().processed == 4; });
    EXPECT_EQ(handled, 1);
    EXPECT_EQ(p.counters().dead_lettered, 3);
    p.close();
    auto dlq = read_topic("orders.dlq", 3);
    ASSERT_EQ(dlq.size(), 3u);
    EXPECT_EQ(header(dlq[0], dlt::reason), "undecodable");
    EXPECT_NE(header(dlq[0], dlt::error_message).find("not a CloudEvent"), std::string::npos);
    EXPECT_EQ(header(dlq[1], dlt::reason), "undecodable");
    EXPECT_NE(header(dlq[1], dlt::error_message).find("JSON"), std::string::npos);
    EXPECT_EQ(header(dlq[2], dlt::reason), "too-large");
    EXPECT_EQ(dlq[2].value, std::string(2000, 'x'));
}

TEST_F(EmbeddedProcessor, RedeliveredEventsAreSkippedAsDuplicates) {
    send_events(0, 3);
    send_events(0, 3);  // the same ids again (e.g. a producer retry after a crash)
    std::map<std::string, int> effects;
    Processor p(config(), [&](const Event& e, HandlerContext&) { ++effects[e.id]; });
    run_until(p, [&] { return p.counters().processed + p.counters().duplicates == 6; });
    EXPECT_EQ(effects.size(), 3u);
    for (auto& [id, n] : effects) EXPECT_EQ(n, 1) << id;
    EXPECT_EQ(p.counters().duplicates, 3);
}

TEST_F(EmbeddedProcessor, StopDuringRetryDoesNotCommitAheadAndTheEventComesBack) {
    send_events(0, 2);
    auto store = std::make_shared<stores::MemoryStore>();
    auto c = config();
    c.store = store;
    c.retry.initial_delay = 2000ms;
    c.retry.max_delay = 2000ms;
    {
        Processor* self = nullptr;
        auto stopping = c;
        // SIGTERM arrives while the processor waits to retry event-1.
        stopping.on_wait = [&] {
            if (self && self->counters().failed_attempts >= 1) self->stop();
        };
        Processor p(stopping, [&](const Event& e, HandlerContext&) {
            if (e.id == "event-1") throw std::runtime_error("fails until restart");
        });
        self = &p;
        run_until(p, [&] { return p.stopping(); });
        EXPECT_EQ(p.counters().processed, 1);
        EXPECT_EQ(p.counters().failed_attempts, 1);
        EXPECT_EQ(p.counters().dead_lettered, 0);
        p.close();
    }
    std::vector<std::string> seen;
    Processor again(c, [&](const Event& e, HandlerContext&) { seen.push_back(e.id); });
    run_until(again, [&] { return !seen.empty(); });
    EXPECT_EQ(seen, std::vector<std::string>{"event-1"})
        << "event-0 was committed, event-1 was not";
}

// While a batch's claim is in the store, the next batch is polled: the next run_once handles
// it, and its offsets are not committed before that (closing leaves it to the group).
TEST_F(EmbeddedProcessor, ABatchPolledAheadIsHandledNextAndNotCommittedBefore) {
    send_events(0, 20);
    auto c = config();
    c.batch_size = 10;
    c.store = std::make_shared<stores::MemoryStore>();
    std::vector<std::string> seen;
    {
        Processor p(c, [&](const Event& e, HandlerContext&) { seen.push_back(e.id); });
        run_until(p, [&] { return seen.size() >= 10; });
        ASSERT_EQ(seen.size(), 10u) << "one batch handled";
        int64_t lag = 0;
        for (const auto& [tp, n] : p.counters().lag) lag += n;
        EXPECT_EQ(lag, 0) << "the second batch was polled ahead";
        p.close();
    }
    std::vector<std::string> later;
    Processor again(c, [&](const Event& e, HandlerContext&) { later.push_back(e.id); });
    run_until(again, [&] { return later.size() >= 10; });
    ASSERT_EQ(later.size(), 10u) << "the batch polled ahead comes back";
    EXPECT_EQ(later.front(), "event-10");
    EXPECT_EQ(later.back(), "event-19");
}

TEST_F(EmbeddedProcessor, UnwritableDeadLetterTopicBlocksWithoutLossOrHotLoop) {
    send_events(0, 3);
    auto c = config();
    c.dead_letter_topic = "missing.dlq";  // does not exist yet
    c.retry.max_attempts = 1;
    c.blocked_backoff_max = 400ms;
    std::atomic<int> applied{0};
    std::atomic<int> applied_while_blocked{-1};
    std::atomic<int64_t> waits_before_fix{0};
    Processor* self = nullptr;
    Clock::time_point first_block{};
    c.on_wait = [&] {
        if (!self || applied_while_blocked.load() >= 0) return;
        auto waits = self->counters().blocked_waits;
        if (waits == 0) return;
        if (first_block == Clock::time_point{}) first_block = Clock::now();
        if (Clock::now() - first_block < 2s) return;
        // Blocked for 2 s: check, then make the dead-letter topic writable.
        applied_while_blocked = applied.load();
        waits_before_fix = waits;
        broker->create_topic("missing.dlq", 1);
    };
    Processor p(c, [&](const Event& e, HandlerContext&) {
        if (e.id == "event-0") throw std::runtime_error("poison");
        ++applied;
    });
    self = &p;
    run_until(p, [&] { return applied.load() == 2; });
    EXPECT_EQ(applied_while_blocked.load(), 0) << "no progress past the undeliverable dead letter";
    EXPECT_GE(waits_before_fix.load(), 3);
    EXPECT_LE(waits_before_fix.load(), 12) << "backs off instead of spinning";
    EXPECT_EQ(applied.load(), 2);
    EXPECT_EQ(p.counters().dead_lettered, 1);
}

TEST_F(EmbeddedProcessor, SqliteStoreAppliesEachEffectOnceEvenWhenAnAttemptFailsAfterWriting) {
    auto store = fresh_sqlite_store("", "CREATE TABLE effects (event_id TEXT, amount INTEGER)");
    send_events(0, 5);
    send_events(0, 5);  // duplicates
    auto c = config();
    c.store = store;
    std::map<std::string, int> attempts;
    Processor p(c, [&](const Event& e, HandlerContext& ctx) {
        ctx.transaction->execute("INSERT INTO effects VALUES (?, ?)", {e.id, int64_t{1}});
        if (++attempts[e.id] == 1) throw std::runtime_error("crash after writing");
    });
    run_until(p, [&] { return p.counters().processed + p.counters().duplicates == 10; });
    auto tx = store->begin();
    auto rows = tx->execute("SELECT event_id, COUNT(*) FROM effects GROUP BY event_id");
    ASSERT_EQ(rows.rows.size(), 5u);
    for (auto& row : rows.rows)
        EXPECT_EQ(std::get<int64_t>(row[1]), 1) << std::get<std::string>(row[0]);
}

TEST_F(EmbeddedProcessor, ConfigurationErrorsNameTheProblem) {
    auto c = config();
    c.name.clear();
    EXPECT_THROW(Processor(c, [](const Event&, HandlerContext&) {}), ConfigurationError);
    c = config();
    c.dead_letter_topic = "orders";
    EXPECT_THROW(Processor(c, [](const Event&, HandlerContext&) {}), ConfigurationError);
    c = config();
    c.retry.max_attempts = 0;
    EXPECT_THROW(Processor(c, [](const Event&, HandlerContext&) {}), ConfigurationError);
}

TEST_F(EmbeddedProcessor, FloodGuardPausesInsteadOfDeadLetteringEverything) {
    send_events(0, 12);
    auto c = config();
    c.retry.max_attempts = 1;
    c.flood_guard.max_failure_ratio = 0.5;
    c.flood_guard.window = 6;
    c.flood_guard.min_events = 4;
    c.flood_guard.pause = 300ms;
    std::atomic<bool> outage{true};
    std::atomic<int64_t> dead_during_outage{-1};
    Processor* self = nullptr;
    c.on_wait = [&] {
        if (!self || !outage.load()) return;
        auto k = self->counters();
        if (k.flood_pauses >= 2) {  // paused twice: the downstream comes back
            dead_during_outage = k.dead_lettered;
            outage = false;
        }
    };
    std::atomic<int> applied{0};
    Processor p(c, [&](const Event&, HandlerContext&) {
        if (outage.load()) throw std::runtime_error("downstream unavailable");
        ++applied;
    });
    self = &p;
    run_until(p, [&] { return p.counters().processed + p.counters().dead_lettered == 12; });
    EXPECT_EQ(dead_during_outage.load(), 3) << "dead letters stop once the failure ratio trips";
    EXPECT_EQ(p.counters().dead_lettered, 3);
    EXPECT_EQ(applied.load(), 9) << "the held event and the rest are applied after the outage";
    EXPECT_GE(p.counters().flood_pauses, 2);
}

TEST_F(EmbeddedProcessor, RetentionPurgesOldMarksSoTheReplayHorizonIsExplicit) {
    auto store = std::make_shared<stores::MemoryStore>();
    {
        auto tx = store->begin();
        tx->claim("billing", "ancient-event");
        tx->commit();
    }
    std::this_thread::sleep_for(1100ms);
    send_events(0, 1);
    auto c = config();
    c.store = store;
    c.retention = 1s;
    Processor p(c, [](const Event&, HandlerContext&) {});
    run_until(p, [&] { return p.counters().processed == 1; });
    EXPECT_EQ(p.counters().purged_marks, 1) << "the old mark is gone at start";
    EXPECT_FALSE(store->contains("billing", "ancient-event"));
    EXPECT_TRUE(store->contains("billing", "event-0")) << "fresh marks stay";
}

// Counts the transactions a processor opens.
struct CountingStore final : stores::IdempotencyStore {
    stores::MemoryStore inner;
    std::atomic<int> begun{0};
    std::unique_ptr<stores::Transaction> begin() override {
        ++begun;
        return inner.begin();
    }
    bool contains(std::string_view s, std::string_view k) override { return inner.contains(s, k); }
    std::size_t purge_older_than(std::chrono::seconds a) override {
        return inner.purge_older_than(a);
    }
    std::string kind() const override { return "counting"; }
};

TEST_F(EmbeddedProcessor, ABatchSharesOneTransactionAndAFailureInsideItKeepsTheOrder) {
    send_events(0, 20);
    auto c = config();
    c.batch_size = 20;
    auto store = std::make_shared<CountingStore>();
    c.store = store;
    std::vector<std::string> calls;    // every handler call, in order
    std::vector<std::string> applied;  // successful attempts, in order
    Processor p(c, [&](const Event& e, HandlerContext&) {
        calls.push_back(e.id);
        if (e.id == "event-7" && std::count(calls.begin(), calls.end(), e.id) == 1)
            throw std::runtime_error("transient");
        applied.push_back(e.id);
    });
    run_until(p, [&] { return p.counters().processed == 20; });
    ASSERT_EQ(p.counters().processed, 20);
    std::vector<std::string> expected;
    for (int i = 0; i < 20; ++i) expected.push_back("event-" + std::to_string(i));
    EXPECT_EQ(applied, expected) << "per-partition order holds across the failure";
    EXPECT_EQ(calls.size(), 21u) << "each event is handled once, event-7 twice";
    EXPECT_EQ(p.counters().retried, 1);
    // Before the failure, the retry of event-7 alone, after it: 3 transactions when the poll
    // returns all 20 at once; one per event would be 21.
    EXPECT_LE(store->begun.load(), 6) << "events of a poll batch share a transaction";
}

TEST_F(EmbeddedProcessor, RetryTopicsKeepThePartitionFlowingAndDeadLetterAfterTheLastLevel) {
    broker->create_topic("orders.retry.1", 1);
    broker->create_topic("orders.retry.2", 1);
    send_events(0, 10);
    auto c = config();
    c.retry.max_attempts = 1;  // no in-process retry: straight to the retry topics
    c.retry_topic_delays = {400ms, 800ms};
    std::mutex mutex;
    std::map<std::string, std::vector<Clock::time_point>> calls;
    std::map<std::string, std::vector<int>> attempt_numbers;
    std::vector<std::string> applied;
    Processor p(c, [&](const Event& e, HandlerContext& ctx) {
        std::lock_guard lock(mutex);
        calls[e.id].push_back(Clock::now());
        attempt_numbers[e.id].push_back(ctx.attempt);
        if (e.id == "event-3") throw std::runtime_error("poison");
        if (e.id == "event-5" && calls[e.id].size() == 1) throw std::runtime_error("transient");
        applied.push_back(e.id);
    });
    run_until(p, [&] {
        auto k = p.counters();
        return k.processed == 9 && k.dead_lettered == 1;
    });
    auto k = p.counters();
    ASSERT_EQ(k.processed, 9);
    ASSERT_EQ(k.dead_lettered, 1);
    EXPECT_EQ(k.retry_topic_sends, 3) << "event-3 to levels 1 and 2, event-5 to level 1";
    // The partition flowed on: events after the failures were handled before any retry.
    EXPECT_LT(calls["event-9"].at(0), calls["event-5"].at(1));
    EXPECT_LT(calls["event-9"].at(0), calls["event-3"].at(1));
    // Retries wait for their level's delay.
    ASSERT_EQ(calls["event-3"].size(), 3u);
    EXPECT_GE(calls["event-3"][1] - calls["event-3"][0], 400ms);
    EXPECT_GE(calls["event-3"][2] - calls["event-3"][1], 800ms);
    EXPECT_EQ(attempt_numbers["event-3"], (std::vector<int>{1, 2, 3}));
    EXPECT_EQ(attempt_numbers["event-5"], (std::vector<int>{1, 2}));
    auto letters = read_topic("orders.dlq", 1);
    ASSERT_EQ(letters.size(), 1u);
    const auto& dl = letters[0];
    EXPECT_EQ(header(dl, "ce_id"), "event-3");
    EXPECT_EQ(header(dl, dlt::original_topic), "orders") << "not the retry topic";
    EXPECT_EQ(header(dl, dlt::original_offset), "3");
    EXPECT_EQ(header(dl, dlt::attempts), "3");
    EXPECT_EQ(header(dl, dlt::reason), "retries-exhausted");
    EXPECT_EQ(header(dl, retry_header::due), "<missing>") << "retry headers are not carried on";
    auto retried = read_topic("orders.retry.1", 2);
    ASSERT_EQ(retried.size(), 2u);
    EXPECT_EQ(header(retried[0], retry_header::original_offset), "3");
    EXPECT_EQ(header(retried[0], retry_header::level), "1");
    EXPECT_EQ(header(retried[0], retry_header::error_message), "poison");
}

TEST_F(EmbeddedProcessor, RetryTopicConfigurationErrorsAreClear) {
    auto c = config();
    c.retry_topic_delays = {0ms};
    EXPECT_THROW(Processor(c, [](const Event&, HandlerContext&) {}), ConfigurationError);
    c = config();
    c.topics = {"orders", "orders.retry.1"};
    try {
        Processor p(c, [](const Event&, HandlerContext&) {});
        FAIL();
    } catch (const ConfigurationError& e) {
        EXPECT_NE(std::string(e.what()).find("is a retry topic of 'orders'"), std::string::npos);
    }
}

TEST_F(EmbeddedProcessor, LanesLetPartitionsProgressWhileOneRetries) {
    send_across("multi", 4, 200);
    // Small queues, so the retrying lane's queue fills and its partitions are paused.
    auto c = lanes_config("multi", 4, 10, 20);
    c.retry.max_attempts = 4;
    c.retry.initial_delay = 300ms;
    c.retry.multiplier = 1.0;
    c.retry.jitter = 0.0;
    std::mutex mutex;
    std::map<int, std::vector<int>> order;  // partition -> event numbers, as applied
    std::map<int, Clock::time_point> last_applied;
    std::unordered_set<std::thread::id> threads;
    std::atomic<int> concurrent{0}, most_concurrent{0};
    Processor p(c, [&](const Event& e, HandlerContext& ctx) {
        const int n = std::stoi(e.id.substr(6));
        int now = ++concurrent;
        for (int seen = most_concurrent;
             now > seen && !most_concurrent.compare_exchange_weak(seen, now);) {
        }
        std::this_thread::sleep_for(2ms);
        --concurrent;
        std::lock_guard lock(mutex);
        threads.insert(std::this_thread::get_id());
        // Event 0 (partition 0) fails three times: ~0.9 s of in-process retries.
        if (n == 0 && ctx.attempt < 4) throw std::runtime_error("transient");
        order[ctx.message.partition].push_back(n);
        last_applied[ctx.message.partition] = Clock::now();
    });
    run_until(p, [&] { return p.counters().processed == 200; });
    ASSERT_EQ(p.counters().processed, 200);
    p.close();
    std::lock_guard lock(mutex);
    for (int partition = 0; partition < 4; ++partition) {
        ASSERT_EQ(order[partition].size(), 50u) << partition;
        EXPECT_TRUE(std::is_sorted(order[partition].begin(), order[partition].end()))
            << "order within partition " << partition;
    }
    EXPECT_GE(threads.size(), 2u);
    EXPECT_GE(most_concurrent.load(), 2) << "partitions were handled at the same time";
    // The other partitions finished while partition 0 was still retrying its first event.
    for (int partition = 1; partition < 4; ++partition)
        EXPECT_LT(last_applied[partition], last_applied[0]) << partition;
    EXPECT_GT(p.counters().lane_pauses, 0)
        << "the retrying lane's partitions were paused while the others went on";
    // Everything is committed: a new member of the group gets nothing.
    auto again = config();
    again.topics = {"multi"};
    again.dead_letter_topic = "orders.dlq";
    std::atomic<int> redelivered{0};
    Processor q(again, [&](const Event&, HandlerContext&) { ++redelivered; });
    for (int i = 0; i < 20; ++i) q.run_once(100ms);
    EXPECT_EQ(redelivered.load(), 0);
}

// Pausing a partition makes librdkafka drop what it prefetched, so lanes that keep up are not
// paused when their queues fill: the poller waits for room instead (and the queues stay
// within their bound plus one poll).
TEST_F(EmbeddedProcessor, LanesThatKeepUpAreWaitedForNotPaused) {
    send_across("steady", 2, 2000);
    auto c = lanes_config("steady", 2, 50, 100);
    std::atomic<int> handled{0};
    Processor p(c, [&](const Event&, HandlerContext&) {
        std::this_thread::sleep_for(50us);
        ++handled;
    });
    run_until(p, [&] { return p.counters().processed == 2000; });
    EXPECT_EQ(handled.load(), 2000);
    EXPECT_EQ(p.counters().lane_pauses, 0);
}

TEST_F(EmbeddedProcessor, BatchHandlerGetsTheFreshEventsOfABatchInOneCallAndOneTransaction) {
    auto store = fresh_sqlite_store("-batch", "CREATE TABLE effects (event_id TEXT)");
    send_events(0, 30);
    send_events(10, 20);  // duplicates, after the originals
    auto c = config();
    c.store = store;
    c.batch_size = 100;
    std::vector<std::size_t> sizes;
    std::vector<std::string> seen;
    Processor p(c, [&](const std::vector<const Event*>& events, BatchHandlerContext& ctx) {
        EXPECT_EQ(ctx.messages.size(), events.size());
        EXPECT_EQ(ctx.attempt, 1);
        sizes.push_back(events.size());
        for (std::size_t k = 0; k < events.size(); ++k) {
            EXPECT_EQ(cloudevents::to_event(*ctx.messages[k]).id, events[k]->id);
            seen.push_back(events[k]->id);
            ctx.transaction->execute("INSERT INTO effects VALUES (?)", {events[k]->id});
        }
    });
    run_until(p, [&] { return p.counters().processed + p.counters().duplicates == 40; });
    EXPECT_EQ(p.counters().processed, 30);
    EXPECT_EQ(p.counters().duplicates, 10);
    std::vector<std::string> expected;
    for (int i = 0; i < 30; ++i) expected.push_back("event-" + std::to_string(i));
    EXPECT_EQ(seen, expected) << "in order, each once, duplicates left out";
    EXPECT_LT(sizes.size(), 30u) << "fewer calls than events";
    EXPECT_GT(*std::max_element(sizes.begin(), sizes.end()), 1u);
    auto tx = store->begin();
    auto rows = tx->execute("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM effects");
    EXPECT_EQ(std::get<int64_t>(rows.rows[0][0]), 30);
    EXPECT_EQ(std::get<int64_t>(rows.rows[0][1]), 30);
}

TEST_F(EmbeddedProcessor, AFailedBatchIsHandledOneEventAtATimeAndOnlyThePoisonIsDeadLettered) {
    auto store = fresh_sqlite_store("-poison", "CREATE TABLE effects (event_id TEXT)");
    send_events(0, 10);
    auto c = config();
    c.store = store;
    c.batch_size = 100;
    std::vector<std::size_t> sizes;
    Processor p(c, [&](const std::vector<const Event*>& events, BatchHandlerContext& ctx) {
        sizes.push_back(events.size());
        for (const auto* e : events) {
            // Written before the failure: rolled back with the batch.
            ctx.transaction->execute("INSERT INTO effects VALUES (?)", {e->id});
            if (e->id == "event-4") throw NonRetryableError("event-4 is poison");
        }
    });
    run_until(p, [&] { return p.counters().processed + p.counters().dead_lettered == 10; });
    auto k = p.counters();
    EXPECT_EQ(k.processed, 9);
    EXPECT_EQ(k.dead_lettered, 1);
    ASSERT_FALSE(sizes.empty());
    EXPECT_GT(sizes.front(), 1u) << "the first call had the whole batch";
    EXPECT_EQ(std::count(sizes.begin() + 1, sizes.end(), 1u),
              static_cast<std::ptrdiff_t>(sizes.size() - 1))
        << "after the failure, one event per call";
    auto dead = read_topic("orders.dlq", 1);
    ASSERT_EQ(dead.size(), 1u);
    EXPECT_EQ(header(dead[0], "postroom-dlt-error-message"), "event-4 is poison");
    auto tx = store->begin();
    auto rows = tx->execute("SELECT event_id, COUNT(*) FROM effects GROUP BY event_id");
    ASSERT_EQ(rows.rows.size(), 9u) << "the poison's write was rolled back";
    for (auto& row : rows.rows)
        EXPECT_EQ(std::get<int64_t>(row[1]), 1) << std::get<std::string>(row[0]);
}

TEST_F(EmbeddedProcessor, ABatchOfOneRetriesWithTheEventsOwnAttempts) {
    send_events(0, 1);
    auto c = config();
    c.retry.max_attempts = 3;
    std::vector<int> attempts;
    Processor p(c, [&](const std::vector<const Event*>& events, BatchHandlerContext& ctx) {
        EXPECT_EQ(events.size(), 1u);
        attempts.push_back(ctx.attempt);
        throw std::runtime_error("always");
    });
    run_until(p, [&] { return p.counters().dead_lettered == 1; });
    EXPECT_EQ(attempts, (std::vector<int>{1, 2, 3})) << "max_attempts handler calls in all";
    EXPECT_EQ(p.counters().retried, 2);
}
