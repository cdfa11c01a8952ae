// The Redis idempotency store against the real server (POSTROOM_REDIS_URL).
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <random>
#include <thread>

#include <hiredis/hiredis.h>

#include "postroom/binding.hpp"
#include "postroom/broker_url.hpp"
#include "postroom/embedded/broker.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/producer.hpp"
#include "postroom/runtime/processor.hpp"
#include "postroom/stores/store.hpp"
#include "service_urls.hpp"
#include "store_contract.hpp"

using namespace postroom;
using namespace postroom::stores;
using namespace std::chrono_literals;

namespace {

std::string redis_url() {
    return redis_service_url();
}

std::string unique_prefix() {
    static std::mt19937_64 rng(std::random_device{}());
    return "gtest:" + std::to_string(rng() % 1000000000) + ":";
}

}  // namespace

template <>
struct StoreFactory<RedisStore> {
    static std::shared_ptr<IdempotencyStore> make() {
        return std::make_shared<RedisStore>(redis_url(), std::chrono::hours(1), unique_prefix());
    }
};
using RedisStores = ::testing::Types<RedisStore>;
INSTANTIATE_TYPED_TEST_SUITE_P(Redis, StoreContract, RedisStores);

TEST(RedisStore, MarksExpireWithTheRetention) {
    RedisStore store(redis_url(), std::chrono::seconds(1), unique_prefix());
    auto tx = store.begin();
    ASSERT_TRUE(tx->claim("p", "short-lived"));
    tx->commit();
    EXPECT_TRUE(store.contains("p", "short-lived"));
    std::this_thread::sleep_for(1500ms);
    EXPECT_FALSE(store.contains("p", "short-lived")) << "the retention is the replay horizon";
}

TEST(RedisStore, WrongUrlsAreClearErrors) {
    EXPECT_THROW(RedisStore("kafka://127.0.0.1:1"), ConfigurationError);
    try {
        RedisStore store("redis://127.0.0.1:1/0");
        FAIL();
    } catch (const StorageError& e) {
        EXPECT_EQ(e.retriable(), Retriable::yes);
        EXPECT_NE(std::string(e.what()).find("127.0.0.1:1"), std::string::npos) << e.what();
    }
}

namespace {

// The test server's URL with database `db`.
std::string redis_url_of_db(int db) {
    auto parsed = postroom::parse_broker_url(redis_url());
    return "redis://" + parsed.hosts.at(0).host + ":" + std::to_string(parsed.hosts.at(0).port) +
           "/" + std::to_string(db);
}

// Runs one command with a plain hiredis connection, independent of the store, on database
// `db` (-1: the test URL's); returns a string reply's text ("" for others).
std::string redis_call(const std::vector<std::string>& args, int db = -1) {
    auto parsed = postroom::parse_broker_url(redis_url());
    if (db < 0) db = parsed.redis_db;
    redisContext* c = redisConnect(parsed.hosts.at(0).host.c_str(), parsed.hosts.at(0).port);
    if (!c || c->err) {
        if (c) redisFree(c);
        ADD_FAILURE() << "cannot connect to Redis";
        return {};
    }
    if (db != 0) freeReplyObject(redisCommand(c, "SELECT %d", db));
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (const auto& a : args) {
        argv.push_back(a.data());
        lengths.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lengths.data()));
    EXPECT_TRUE(r && r->type != REDIS_REPLY_ERROR) << args.front();
    std::string value = r && r->type == REDIS_REPLY_STRING ? std::string(r->str, r->len) : "";
    if (r) freeReplyObject(r);
    redisFree(c);
    return value;
}

// Reads one key with a plain hiredis connection, independent of the store.
std::string redis_get(const std::string& key, int db = -1) {
    return redis_call({"GET", key}, db);
}

void redis_run(const std::vector<std::string>& args) {
    redis_call(args);
}

// Runs `commit` and expects it to fail with a StorageError that is `retriable` and names
// `mentions`.
template <typename Commit>
void expect_refused(Commit&& commit, Retriable retriable, std::string_view mentions) {
    try {
        commit();
        ADD_FAILURE() << "the commit must be refused";
    } catch (const StorageError& e) {
        EXPECT_EQ(e.retriable(), retriable);
        EXPECT_NE(std::string(e.what()).find(mentions), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(RedisStore, QueuedCommandsApplyWithTheMarksOrNotAtAll) {
    auto prefix = unique_prefix();
    RedisStore store(redis_url(), std::chrono::hours(1), prefix);
    const std::string counter = prefix + "effects";
    {
        auto tx = store.begin();
        ASSERT_EQ(tx->claim_batch("p", {"e1", "e2", "e3"}), (std::vector<bool>{true, true, true}));
        tx->savepoint();
        tx->enqueue_command({"INCRBY", counter, "1"});
        tx->savepoint();
        tx->enqueue_command({"INCRBY", counter, "10"});
        tx->rollback_to_savepoint();  // e2's handler failed: its command is dropped
        tx->unclaim("p", {"e2", "e3"});
        EXPECT_EQ(redis_get(counter), "") << "nothing runs before commit";
        tx->commit();
    }
    EXPECT_EQ(redis_get(counter), "1");
    EXPECT_TRUE(store.contains("p", "e1"));
    EXPECT_FALSE(store.contains("p", "e2"));
    {
        auto tx = store.begin();
        ASSERT_TRUE(tx->claim("p", "e2"));
        tx->enqueue_command({"INCRBY", counter, "100"});
        // destroyed without commit: the command never runs
    }
    EXPECT_EQ(redis_get(counter), "1");
    EXPECT_FALSE(store.contains("p", "e2"));
}

namespace {

// A transaction that claimed "e1" and queued a good command and one Redis rejects.
std::unique_ptr<Transaction> refused_transaction(RedisStore& store, const std::string& prefix) {
    auto tx = store.begin();
    EXPECT_TRUE(tx->claim("p", "e1"));
    tx->enqueue_command({"INCRBY", prefix + "n", "1"});
    tx->enqueue_command({"NO-SUCH-COMMAND", "x"});
    return tx;
}

}  // namespace

TEST(RedisStore, ARefusedCommandAppliesNothing) {
    auto prefix = unique_prefix();
    RedisStore store(redis_url(), std::chrono::hours(1), prefix);
    auto tx = refused_transaction(store, prefix);
    expect_refused([&] { tx->commit(); }, Retriable::no, "NO-SUCH-COMMAND");
    EXPECT_EQ(redis_get(prefix + "n"), "");
    EXPECT_FALSE(store.contains("p", "e1")) << "the mark is not applied either";
    EXPECT_THROW(store.begin()->execute("SELECT 1"), UsageError);
}

// A claim writes its mark once and points it at the transaction's record; commit turns only
// the record into "committed" (one write per event, not two).
TEST(RedisStore, AClaimWritesTheMarkOnceAndTheCommitOnlyTheTransactionRecord) {
    auto prefix = unique_prefix();
    RedisStore store(redis_url(), std::chrono::hours(1), prefix);
    auto tx = store.begin();
    ASSERT_EQ(tx->claim_batch("p", {"a", "b"}), (std::vector<bool>{true, true}));
    const auto mark = redis_get(prefix + "p:a");
    ASSERT_EQ(mark.rfind("tx:", 0), 0u) << mark;
    EXPECT_EQ(redis_get(prefix + "p:b"), mark) << "one transaction, one mark value";
    const auto record = prefix + "transaction:" + mark.substr(3);
    EXPECT_EQ(redis_get(record), "open");
    EXPECT_FALSE(store.contains("p", "a")) << "claimed is not applied";
    tx->commit();
    EXPECT_EQ(redis_get(prefix + "p:a"), mark) << "the mark is not written again";
    EXPECT_EQ(redis_get(record).rfind("committed:", 0), 0u) << redis_get(record);
    EXPECT_TRUE(store.contains("p", "a"));
    EXPECT_TRUE(store.contains("p", "b"));
}

// Marks written by an earlier version ("done:<ms>") still count as applied.
TEST(RedisStore, MarksOfTheEarlierFormatAreDuplicates) {
    auto prefix = unique_prefix();
    RedisStore store(redis_url(), std::chrono::hours(1), prefix);
    redis_run({"SET", prefix + "p:old", "done:1700000000000", "EX", "60"});
    EXPECT_TRUE(store.contains("p", "old"));
    auto tx = store.begin();
    EXPECT_EQ(tx->claim_batch("p", {"old", "new"}), (std::vector<bool>{false, true}));
    tx->commit();
    EXPECT_EQ(store.purge_older_than(std::chrono::seconds(3600)), 1u)
        << "the old mark is from 2023";
    EXPECT_FALSE(store.contains("p", "old"));
    EXPECT_TRUE(store.contains("p", "new"));
}

// The lease only matters when someone else wants the claims: a slow transaction whose lease
// ran out still commits if nobody took them; if another worker did, its commit is refused
// (retriable) and only the other worker's effect applies.
TEST(RedisStore, ACommitAfterTheLeaseRanOutAppliesOnlyIfNoWorkerTookTheClaims) {
    auto prefix = unique_prefix();
    RedisStore store(redis_url(), std::chrono::hours(1), prefix, 200ms);
    const std::string counter = prefix + "effects";
    {
        auto slow = store.begin();
        ASSERT_TRUE(slow->claim("p", "alone"));
        slow->enqueue_command({"INCR", counter});
        std::this_thread::sleep_for(400ms);
        slow->commit();
    }
    EXPECT_TRUE(store.contains("p", "alone"));
    EXPECT_EQ(redis_get(counter), "1");

    auto slow = store.begin();
    ASSERT_TRUE(slow->claim("p", "contested"));
    slow->enqueue_command({"INCR", counter});
    std::this_thread::sleep_for(400ms);
    auto other = store.begin();
    ASSERT_TRUE(other->claim("p", "contested")) << "the lease ran out: the claim is taken over";
    other->enqueue_command({"INCR", counter});
    expect_refused([&] { slow->commit(); }, Retriable::yes, "lease");  // it lost its claim
    EXPECT_EQ(redis_get(counter), "1") << "nothing of the refused commit applied";
    other->commit();
    EXPECT_EQ(redis_get(counter), "2");
    auto again = store.begin();
    EXPECT_FALSE(again->claim("p", "contested"));
    again->commit();
}

// A killed worker leaves its marks and its open record behind: once the record's lease runs
// out, the marks are taken over, not treated as applied.
TEST(RedisStore, ClaimsOfAnAbandonedTransactionAreTakenOverAfterTheLease) {
    auto prefix = unique_prefix();
    RedisStore store(redis_url(), std::chrono::hours(1), prefix, 300ms);
    const std::string token = "0123456789abcdef0123456789abcdef";
    redis_run({"SET", prefix + "transaction:" + token, "open", "PX", "300"});
    for (const auto* k : {"p:x", "p:y"}) redis_run({"SET", prefix + k, "tx:" + token, "EX", "60"});
    const auto started = std::chrono::steady_clock::now();
    auto next = store.begin();
    EXPECT_EQ(next->claim_batch("p", {"y", "z"}), (std::vector<bool>{true, true}));
    EXPECT_GE(std::chrono::steady_clock::now() - started, 200ms)
        << "a claim held by an open transaction waits for its lease";
    next->commit();
    EXPECT_TRUE(store.contains("p", "y"));
    EXPECT_FALSE(store.contains("p", "x")) << "never committed";
}

// A batch larger than one script call (1,000 keys) is claimed in several, in one transaction.
TEST(RedisStore, ABatchOfManyKeysIsClaimedAcrossScriptCalls) {
    RedisStore store(redis_url(), std::chrono::hours(1), unique_prefix());
    std::vector<std::string> keys;
    for (int i = 0; i < 2500; ++i) keys.push_back("e" + std::to_string(i));
    keys.push_back("e7");  // repeated: claimed once
    {
        auto tx = store.begin();
        auto claimed = tx->claim_batch("p", keys);
        EXPECT_EQ(std::count(claimed.begin(), claimed.end(), true), 2500);
        EXPECT_FALSE(claimed.back());
        tx->commit();
    }
    EXPECT_TRUE(store.contains("p", "e0"));
    EXPECT_TRUE(store.contains("p", "e2499"));
    auto again = store.begin();
    auto claimed = again->claim_batch("p", keys);
    EXPECT_EQ(std::count(claimed.begin(), claimed.end(), true), 0) << "all applied already";
    again->commit();
}

// A commit started in the background (the processor's way on Redis) runs before whatever
// is sent on the store's connection after it; its reply is kept for finish_commit().
TEST(RedisStore, ACommitStartedInTheBackgroundRunsBeforeWhatIsSentAfterIt) {
    auto prefix = unique_prefix();
    RedisStore store(redis_url(), std::chrono::hours(1), prefix);
    const std::string counter = prefix + "effects";
    auto first = store.begin();
    ASSERT_EQ(first->claim_batch("p", {"a", "b"}), (std::vector<bool>{true, true}));
    first->enqueue_command({"INCRBY", counter, "2"});
    ASSERT_TRUE(first->start_commit()) << "Redis commits in the background";
    auto next = store.begin();
    EXPECT_EQ(next->claim_batch("p", {"a", "c"}), (std::vector<bool>{false, true}))
        << "the next claim sees the first commit applied";
    next->enqueue_command({"INCRBY", counter, "1"});
    next->commit();
    EXPECT_NO_THROW(first->finish_commit()) << "its reply was kept while `next` ran";
    EXPECT_EQ(redis_get(counter), "3");
    EXPECT_TRUE(store.contains("p", "b"));
}

TEST(RedisStore, ABackgroundCommitReportsARefusalWhenFinished) {
    auto prefix = unique_prefix();
    RedisStore store(redis_url(), std::chrono::hours(1), prefix);
    auto tx = refused_transaction(store, prefix);
    ASSERT_TRUE(tx->start_commit());
    expect_refused([&] { tx->finish_commit(); }, Retriable::no, "NO-SUCH-COMMAND");
    EXPECT_EQ(redis_get(prefix + "n"), "");
    EXPECT_FALSE(store.contains("p", "e1"));
    auto again = store.begin();
    EXPECT_TRUE(again->claim("p", "e1")) << "the refused transaction gave its claim back";
    again->commit();
}

// The connection is cut while the commit waits in the server (writes paused): the outcome
// is unknown, the error says so and is retriable, and since the commit never ran, the claim
// is taken over once its lease runs out.
TEST(RedisStore, ABackgroundCommitWhoseReplyIsLostIsInDoubtAndRetriable) {
    constexpr int db = 9;  // the store alone on this database: its connection can be found
    auto prefix = unique_prefix();
    RedisStore store(redis_url_of_db(db), std::chrono::hours(1), prefix, 300ms);
    const std::string counter = prefix + "effects";
    auto tx = store.begin();
    ASSERT_TRUE(tx->claim("p", "e1"));
    tx->enqueue_command({"INCR", counter});
    redis_call({"CLIENT", "PAUSE", "5000", "WRITE"});
    bool started = false;
    try {
        started = tx->start_commit();
        std::string clients = redis_call({"CLIENT", "LIST"});
        std::size_t killed = 0;
        for (std::size_t at = 0, end; at < clients.size(); at = end + 1) {
            end = clients.find('\n', at);
            if (end == std::string::npos) end = clients.size();
            auto line = clients.substr(at, end - at);
            if (line.find(" db=" + std::to_string(db) + " ") == std::string::npos) continue;
            redis_call({"CLIENT", "KILL", "ID", line.substr(3, line.find(' ') - 3)});
            ++killed;
        }
        EXPECT_EQ(killed, 1u) << clients;
    } catch (...) {
        redis_call({"CLIENT", "UNPAUSE"});
        throw;
    }
    redis_call({"CLIENT", "UNPAUSE"});
    ASSERT_TRUE(started);
    expect_refused([&] { tx->finish_commit(); }, Retriable::yes, "unknown");
    EXPECT_EQ(redis_get(counter, db), "") << "the commit never ran";
    auto again = store.begin();
    EXPECT_TRUE(again->claim("p", "e1")) << "taken over after the lease";
    again->enqueue_command({"INCR", counter});
    again->commit();
    EXPECT_EQ(redis_get(counter, db), "1");
}

// On Redis a batch's commit runs in the background: the processor finishes its events in the
// next run_once, which settles it right after polling, without waiting for new messages. A
// background commit that is refused has its events handled again; each effect applies once.
TEST(RedisStore, AProcessorFinishesABatchWhenItsBackgroundCommitIsConfirmed) {
    const std::string name = "redis-bg-" + std::to_string(::getpid());
    auto broker = embedded::Broker::shared(name);
    broker->create_topic("orders", 1);
    broker->create_topic("orders.dlq", 1);
    auto send_events = [&](int from, int to) {
        kafka::ProducerConfig pc;
        pc.broker_url = "embedded://" + name;
        kafka::Producer producer(pc);
        std::vector<OutgoingMessage> out;
        for (int i = from; i < to; ++i) {
            Event e("event-" + std::to_string(i), "/test", "order.placed");
            e.data = "{}";
            out.push_back(cloudevents::to_message(e, "orders", std::string("k")));
        }
        producer.send_batch(out)->raise_for_failures();
    };
    auto prefix = unique_prefix();
    const std::string counter = prefix + "effects";
    runtime::ProcessorConfig c;
    c.name = "billing";
    c.broker_url = "embedded://" + name;
    c.topics = {"orders"};
    c.store = std::make_shared<RedisStore>(redis_url(), std::chrono::hours(1), prefix);
    c.commit_interval = 0ms;
    c.retry.initial_delay = 10ms;
    c.log = [](int, const std::string&) {};
    int calls = 0;
    std::string refuse;  // this event's first call queues a command Redis rejects
    runtime::Processor processor(c, [&](const Event& e, runtime::HandlerContext& ctx) {
        ++calls;
        ctx.transaction->enqueue_command({"INCR", counter});
        if (e.id == refuse) {
            refuse.clear();
            ctx.transaction->enqueue_command({"NO-SUCH-COMMAND"});
        }
    });
    auto handle_until = [&](int handler_calls) {
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        while (calls < handler_calls && std::chrono::steady_clock::now() < deadline)
            processor.run_once(100ms);
        ASSERT_EQ(calls, handler_calls);
    };

    send_events(0, 10);
    handle_until(10);
    EXPECT_EQ(processor.counters().processed, 0) << "the commit is still in the background";
    const auto started = std::chrono::steady_clock::now();
    EXPECT_EQ(processor.run_once(5s), 10u) << "the next run_once finishes the batch";
    EXPECT_LT(std::chrono::steady_clock::now() - started, 2s) << "without waiting for messages";
    EXPECT_EQ(processor.counters().processed, 10);
    EXPECT_EQ(redis_get(counter), "10");

    refuse = "event-13";
    send_events(10, 20);
    handle_until(20);
    EXPECT_EQ(processor.run_once(5s), 10u) << "refused in the background, then handled again";
    EXPECT_EQ(calls, 30);
    auto counters = processor.counters();
    EXPECT_EQ(counters.processed, 20);
    EXPECT_EQ(counters.duplicates, 0) << "the refused commit applied no mark";
    EXPECT_EQ(counters.dead_lettered, 0);
    EXPECT_EQ(redis_get(counter), "20") << "nor any effect";
    processor.close();
}
