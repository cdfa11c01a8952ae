// The Redis idempotency store against the real server (POSTROOM_REDIS_URL).
#include <gtest/gtest.h>

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
    try {
        tx->commit();
        FAIL() << "a refused command must fail the commit";
    } catch (const StorageError& e) {
        EXPECT_EQ(e.retriable(), Retriable::no);
        EXPECT_NE(std::string(e.what()).find("NO-SUCH-COMMAND"), std::string::npos) << e.what();
    }
    EXPECT_EQ(redis_get(prefix + "n"), "");
    EXPECT_FALSE(store.contains("p", "e1")) << "the mark is not applied either";
    EXPECT_THROW(store.begin()->execute("SELECT 1"), UsageError);
}
