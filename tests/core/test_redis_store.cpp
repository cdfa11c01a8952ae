// The Redis idempotency store against the real server (POSTROOM_REDIS_URL).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <random>
#include <thread>

#include "postroom/error.hpp"
#include "postroom/stores/store.hpp"
#include "store_contract.hpp"

using namespace postroom;
using namespace postroom::stores;
using namespace std::chrono_literals;

namespace {

std::string redis_url() {
    const char* url = std::getenv("POSTROOM_REDIS_URL");
    if (!url || !*url) {
        ADD_FAILURE() << "POSTROOM_REDIS_URL is not set; start Redis with scripts/services.sh "
                         "start redis and export its URL";
        return "redis://127.0.0.1:1/0";
    }
    return url;
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
