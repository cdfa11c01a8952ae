// The Redis idempotency store against the real server (POSTROOM_REDIS_URL).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <random>
#include <thread>

#include <hiredis/hiredis.h>

#include "postroom/broker_url.hpp"
#include "postroom/error.hpp"
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

// Reads one key with a plain hiredis connection, independent of the store.
std::string redis_get(const std::string& key) {
    auto parsed = postroom::parse_broker_url(redis_url());
    redisContext* c = redisConnect(parsed.hosts.at(0).host.c_str(), parsed.hosts.at(0).port);
    if (!c || c->err) {
        if (c) redisFree(c);
        ADD_FAILURE() << "cannot connect to Redis";
        return {};
    }
    if (parsed.redis_db != 0) freeReplyObject(redisCommand(c, "SELECT %d", parsed.redis_db));
    auto* r = static_cast<redisReply*>(redisCommand(c, "GET %b", key.data(), key.size()));
    std::string value = r && r->type == REDIS_REPLY_STRING ? std::string(r->str, r->len) : "";
    if (r) freeReplyObject(r);
    redisFree(c);
    return value;
}

// Runs one command with a plain hiredis connection, independent of the store.
void redis_run(const std::vector<std::string>& args) {
    auto parsed = postroom::parse_broker_url(redis_url());
    redisContext* c = redisConnect(parsed.hosts.at(0).host.c_str(), parsed.hosts.at(0).port);
    ASSERT_TRUE(c && !c->err) << "cannot connect to Redis";
    if (parsed.redis_db != 0) freeReplyObject(redisCommand(c, "SELECT %d", parsed.redis_db));
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (const auto& a : args) {
        argv.push_back(a.data());
        lengths.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lengths.data()));
    EXPECT_TRUE(r && r->type != REDIS_REPLY_ERROR) << args.front();
    if (r) freeReplyObject(r);
    redisFree(c);
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

TEST(RedisStore, ARefusedCommandAppliesNothing) {
    auto prefix = unique_prefix();
    RedisStore store(redis_url(), std::chrono::hours(1), prefix);
    auto tx = store.begin();
    ASSERT_TRUE(tx->claim("p", "e1"));
    tx->enqueue_command({"INCRBY", prefix + "n", "1"});
    tx->enqueue_command({"NO-SUCH-COMMAND", "x"});
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
