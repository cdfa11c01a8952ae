#pragma once
// One contract for every idempotency store: instantiate StoreContract with a type for which
// StoreFactory<T>::make() returns a fresh, empty store.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "postroom/stores/store.hpp"

template <typename T>
struct StoreFactory;

template <typename T>
struct StoreContract : ::testing::Test {
    std::shared_ptr<postroom::stores::IdempotencyStore> make() { return StoreFactory<T>::make(); }
};
TYPED_TEST_SUITE_P(StoreContract);

TYPED_TEST_P(StoreContract, ClaimCommitThenDuplicate) {
    auto store = this->make();
    {
        auto tx = store->begin();
        EXPECT_TRUE(tx->claim("p", "e1"));
        tx->commit();
    }
    EXPECT_TRUE(store->contains("p", "e1"));
    EXPECT_FALSE(store->contains("other-processor", "e1")) << "scope = processor name";
    auto tx = store->begin();
    EXPECT_FALSE(tx->claim("p", "e1"));
    tx->rollback();
}

TYPED_TEST_P(StoreContract, RollbackForgetsTheClaim) {
    auto store = this->make();
    {
        auto tx = store->begin();
        EXPECT_TRUE(tx->claim("p", "e1"));
        // destroyed without commit: rolled back
    }
    EXPECT_FALSE(store->contains("p", "e1"));
    auto tx = store->begin();
    EXPECT_TRUE(tx->claim("p", "e1"));
    tx->commit();
}

TYPED_TEST_P(StoreContract, RacingWorkersProduceOneEffect) {
    auto store = this->make();
    std::atomic<int> effects{0}, duplicates{0};
    std::vector<std::thread> workers;
    for (int w = 0; w < 4; ++w)
        workers.emplace_back([&] {
            for (int i = 0; i < 50; ++i) {
                auto tx = store->begin();
                if (tx->claim("p", "event-" + std::to_string(i))) {
                    ++effects;
                    tx->commit();
                } else {
                    ++duplicates;
                }
            }
        });
    for (auto& t : workers) t.join();
    EXPECT_EQ(effects.load(), 50);
    EXPECT_EQ(duplicates.load(), 150);
}

TYPED_TEST_P(StoreContract, PurgeOlderThanForgetsOldMarks) {
    using namespace std::chrono_literals;
    auto store = this->make();
    auto tx = store->begin();
    tx->claim("p", "old");
    tx->commit();
    EXPECT_EQ(store->purge_older_than(3600s), 0u);
    std::this_thread::sleep_for(1100ms);
    EXPECT_EQ(store->purge_older_than(1s), 1u);
    EXPECT_FALSE(store->contains("p", "old"));
}

// Like a row lock: the second claim of a key waits for the first transaction's outcome; if
// that rolls back, nothing was applied, so the second one claims.
TYPED_TEST_P(StoreContract, LoserWaitsAndClaimsIfTheWinnerRollsBack) {
    using namespace std::chrono_literals;
    auto store = this->make();
    auto winner = store->begin();
    ASSERT_TRUE(winner->claim("p", "e"));
    std::atomic<int> loser_result{-1};
    std::thread loser([&] {
        auto tx = store->begin();
        loser_result = tx->claim("p", "e") ? 1 : 0;
        tx->commit();
    });
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(loser_result.load(), -1) << "the loser waits for the winner's outcome";
    winner->rollback();
    loser.join();
    EXPECT_EQ(loser_result.load(), 1) << "nothing was applied, so the loser applies it";
    EXPECT_TRUE(store->contains("p", "e"));
}

TYPED_TEST_P(StoreContract, BatchClaimSeesAppliedAndRepeatedKeys) {
    auto store = this->make();
    {
        auto tx = store->begin();
        ASSERT_TRUE(tx->claim("p", "old"));
        tx->commit();
    }
    auto tx = store->begin();
    // A key with quotes, backslashes and commas must survive any array encoding.
    const std::vector<std::string> keys{"a", "old", "b", "a", "q\"u,o\\te{}", "c"};
    auto claimed = tx->claim_batch("p", keys);
    EXPECT_EQ(claimed, (std::vector<bool>{true, false, true, false, true, true}));
    tx->commit();
    for (const auto& k : {"a", "b", "q\"u,o\\te{}", "c", "old"})
        EXPECT_TRUE(store->contains("p", k)) << k;
    auto again = store->begin();
    EXPECT_EQ(again->claim_batch("p", {"c", "d"}), (std::vector<bool>{false, true}));
    again->rollback();
    EXPECT_FALSE(store->contains("p", "d")) << "rolled back";
}

TYPED_TEST_P(StoreContract, UnclaimGivesKeysBackBeforeCommit) {
    auto store = this->make();
    auto tx = store->begin();
    ASSERT_EQ(tx->claim_batch("p", {"x", "y", "z"}), (std::vector<bool>{true, true, true}));
    tx->savepoint();
    tx->rollback_to_savepoint();  // nothing written since: harmless
    tx->unclaim("p", {"y", "z"});
    tx->commit();
    EXPECT_TRUE(store->contains("p", "x"));
    EXPECT_FALSE(store->contains("p", "y"));
    EXPECT_FALSE(store->contains("p", "z"));
    auto next = store->begin();
    EXPECT_EQ(next->claim_batch("p", {"y", "z", "x"}), (std::vector<bool>{true, true, false}));
    next->commit();
}

REGISTER_TYPED_TEST_SUITE_P(StoreContract, ClaimCommitThenDuplicate, RollbackForgetsTheClaim,
                            RacingWorkersProduceOneEffect, PurgeOlderThanForgetsOldMarks,
                            LoserWaitsAndClaimsIfTheWinnerRollsBack,
                            BatchClaimSeesAppliedAndRepeatedKeys, UnclaimGivesKeysBackBeforeCommit);
