// Retry schedule, dead-letter records and idempotency stores: no broker needed.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <random>
#include <thread>

#include "postroom/error.hpp"
#include "postroom/runtime/dead_letter.hpp"
#include "postroom/runtime/retry.hpp"
#include "postroom/stores/store.hpp"
#include "store_contract.hpp"

using namespace postroom;
using namespace postroom::runtime;
using namespace postroom::stores;
using namespace std::chrono_literals;

TEST(RetryPolicy, ExponentialWithCapAndJitterBounds) {
    RetryPolicy p;
    p.initial_delay = 100ms;
    p.multiplier = 2.0;
    p.max_delay = 1000ms;
    p.jitter = 0.2;
    EXPECT_EQ(p.bounds(2), std::make_pair(80ms, 120ms));
    EXPECT_EQ(p.bounds(3), std::make_pair(160ms, 240ms));
    EXPECT_EQ(p.bounds(6), std::make_pair(800ms, 1200ms)) << "capped at max_delay before jitter";
    std::mt19937_64 rng(7);
    for (int attempt = 2; attempt < 10; ++attempt)
        for (int i = 0; i < 200; ++i) {
            auto d = p.delay_before(attempt, std::uniform_real_distribution<double>(0, 1)(rng));
            auto [lo, hi] = p.bounds(attempt);
            ASSERT_GE(d, lo);
            ASSERT_LE(d, hi);
        }
}

TEST(RetryPolicy, ValidationNamesTheField) {
    RetryPolicy p;
    p.max_attempts = 0;
    EXPECT_THROW(p.validate(), ConfigurationError);
    p = {};
    p.multiplier = 0.5;
    EXPECT_THROW(p.validate(), ConfigurationError);
    p = {};
    p.jitter = 1.0;
    EXPECT_THROW(p.validate(), ConfigurationError);
    p = {};
    p.max_delay = 1ms;
    EXPECT_THROW(p.validate(), ConfigurationError);
}

TEST(DeadLetter, KeepsTheOriginalAndAddsTheHeaderFamily) {
    Message m;
    m.topic = "orders";
    m.partition = 2;
    m.offset = 41;
    m.key = "k";
    m.value = std::string("\x00\x01", 2);
    m.timestamp_ms = 1700000000000;
    m.headers = {{"ce_id", std::string("e1")}, {"postroom-dlt-reason", std::string("old")}};
    Failure f{DeadLetterReason::retries_exhausted,
              "ValueError",
              "bad",
              "Traceback...",
              3,
              "2026-01-01T00:00:00Z",
              "2026-01-01T00:00:01Z"};
    auto out = make_dead_letter(m, f, "orders.dlq", "billing", "billing-group");
    EXPECT_EQ(out.topic, "orders.dlq");
    EXPECT_EQ(out.key, m.key);
    EXPECT_EQ(out.value, m.value);
    auto get = [&](std::string_view name) {
        auto* h = find_header(out.headers, name);
        return h && h->value ? *h->value : std::string("<missing>");
    };
    EXPECT_EQ(get("ce_id"), "e1");
    EXPECT_EQ(get(dlt::reason), "retries-exhausted") << "earlier dlt headers are replaced";
    EXPECT_EQ(get(dlt::error_type), "ValueError");
    EXPECT_EQ(get(dlt::error_message), "bad");
    EXPECT_EQ(get(dlt::error_stack), "Traceback...");
    EXPECT_EQ(get(dlt::original_topic), "orders");
    EXPECT_EQ(get(dlt::original_partition), "2");
    EXPECT_EQ(get(dlt::original_offset), "41");
    EXPECT_EQ(get(dlt::original_timestamp), "1700000000000");
    EXPECT_EQ(get(dlt::processor), "billing");
    EXPECT_EQ(get(dlt::group), "billing-group");
    EXPECT_EQ(get(dlt::attempts), "3");
    EXPECT_EQ(get(dlt::first_failure), "2026-01-01T00:00:00Z");
    EXPECT_EQ(get(dlt::last_failure), "2026-01-01T00:00:01Z");
}

TEST(DeadLetter, ALetterTooLargeForItsTopicKeepsItsHeadersAndAPrefixOfItsValue) {
    Message m;
    m.topic = "blobs";
    m.key = "k";
    m.value = std::string(2 << 20, 'v');
    m.value->front() = 'A';
    m.headers = {{"ce_id", std::string("e1")}};
    Failure f{DeadLetterReason::too_large, "postroom::CodecError", "too large", "", 0, "", ""};
    auto letter = make_dead_letter(m, f, "blobs.dlq", "p", "g");
    const std::size_t limit = 1'048'588;  // Kafka's default max.message.bytes
    ASSERT_GT(record_bytes(letter), limit);
    ASSERT_TRUE(fit_dead_letter(letter, limit));
    EXPECT_LE(record_bytes(letter), limit);
    EXPECT_GT(record_bytes(letter), limit - 256) << "as much of the value as fits";
    ASSERT_TRUE(letter.value);
    EXPECT_EQ(letter.value->front(), 'A') << "a prefix of the value";
    EXPECT_EQ(m.value->compare(0, letter.value->size(), *letter.value), 0);
    auto get = [&](std::string_view name) {
        auto* h = find_header(letter.headers, name);
        return h && h->value ? *h->value : std::string("<missing>");
    };
    EXPECT_EQ(get(dlt::value_truncated), "true");
    EXPECT_EQ(get(dlt::value_length), std::to_string(2 << 20));
    EXPECT_EQ(get("ce_id"), "e1");
    EXPECT_EQ(get(dlt::reason), "too-large");

    auto small = make_dead_letter(m, f, "blobs.dlq", "p", "g");
    small.value = "tiny";
    const auto before = small;
    EXPECT_TRUE(fit_dead_letter(small, limit));
    EXPECT_EQ(small.headers.size(), before.headers.size()) << "a letter that fits is untouched";
    EXPECT_EQ(small.value, before.value);
}

TEST(DeadLetter, ALetterWhoseKeyAndHeadersAloneAreTooLargeDoesNotFit) {
    Message m;
    m.topic = "t";
    m.value = "v";
    Failure f{DeadLetterReason::non_retryable, "E", "message", "", 1, "", ""};
    auto letter = make_dead_letter(m, f, "t.dlq", "p", "g");
    EXPECT_FALSE(fit_dead_letter(letter, 300));
    EXPECT_TRUE(fit_dead_letter(letter, 4096));
}

TEST(DeadLetter, FailureTextsAreBoundedWithTheirLength) {
    Message m;
    m.topic = "t";
    Failure f{DeadLetterReason::non_retryable,
              std::string(10'000, 'T'),
              std::string(100'000, 'm') + "\xc3\xa9",
              std::string(1 << 20, 's'),
              1,
              "",
              ""};
    for (const auto& record : {make_dead_letter(m, f, "t.dlq", "p", "g"), make_retry(m, f, 1, 0)})
        for (const auto& h : record.headers) {
            ASSERT_TRUE(h.value);
            EXPECT_LE(h.value->size(), max_error_stack_bytes + 32) << h.name;
            if (h.name.find("error-message") != std::string::npos) {
                EXPECT_LE(h.value->size(), max_error_message_bytes + 32);
                EXPECT_NE(h.value->find("(100002 bytes)"), std::string::npos) << *h.value;
            }
        }
}

// --- stores: one contract for every implementation -------------------------------------

namespace {
std::string temp_db() {
    static std::atomic<int> n{0};
    auto path =
        std::filesystem::temp_directory_path() /
        ("postroom-store-" + std::to_string(::getpid()) + "-" + std::to_string(++n) + ".db");
    std::filesystem::remove(path);
    return path.string();
}
}  // namespace

template <>
struct StoreFactory<MemoryStore> {
    static std::shared_ptr<IdempotencyStore> make() { return std::make_shared<MemoryStore>(); }
};
template <>
struct StoreFactory<SqliteStore> {
    static std::shared_ptr<IdempotencyStore> make() {
        return std::make_shared<SqliteStore>(temp_db());
    }
};
using LocalStores = ::testing::Types<MemoryStore, SqliteStore>;
INSTANTIATE_TYPED_TEST_SUITE_P(Local, StoreContract, LocalStores);

TEST(MemoryStore, IsBoundedByCapacity) {
    MemoryStore store(10);
    for (int i = 0; i < 25; ++i) {
        auto tx = store.begin();
        tx->claim("p", std::to_string(i));
        tx->commit();
    }
    EXPECT_EQ(store.size(), 10u);
    EXPECT_TRUE(store.contains("p", "24"));
    EXPECT_FALSE(store.contains("p", "0"));
}

TEST(SqliteStore, HandlerWritesCommitOrRollBackWithTheMark) {
    auto path = temp_db();
    SqliteStore store(path);
    {
        auto tx = store.begin();
        tx->execute("CREATE TABLE IF NOT EXISTS effects (id TEXT PRIMARY KEY, amount INTEGER)");
        tx->commit();
    }
    {
        auto tx = store.begin();
        ASSERT_TRUE(tx->claim("p", "e1"));
        tx->execute("INSERT INTO effects VALUES (?, ?)", {std::string("e1"), int64_t{10}});
        tx->rollback();  // the handler failed
    }
    {
        auto tx = store.begin();
        auto r = tx->execute("SELECT COUNT(*) FROM effects");
        EXPECT_EQ(std::get<int64_t>(r.rows.at(0).at(0)), 0);
        ASSERT_TRUE(tx->claim("p", "e1")) << "the rolled-back mark is gone too";
        tx->execute("INSERT INTO effects VALUES (?, ?)", {std::string("e1"), int64_t{10}});
        tx->commit();
    }
    SqliteStore reopened(path);  // durable across connections
    EXPECT_TRUE(reopened.contains("p", "e1"));
    auto tx = reopened.begin();
    auto r = tx->execute("SELECT id, amount FROM effects");
    ASSERT_EQ(r.rows.size(), 1u);
    EXPECT_EQ(std::get<std::string>(r.rows[0][0]), "e1");
    EXPECT_EQ(r.columns, (std::vector<std::string>{"id", "amount"}));
}

TEST(SqliteStore, SavepointsUndoOneEventOfABatch) {
    SqliteStore store(temp_db());
    {
        auto tx = store.begin();
        tx->execute("CREATE TABLE effects (id TEXT PRIMARY KEY)");
        tx->commit();
    }
    {
        auto tx = store.begin();
        ASSERT_EQ(tx->claim_batch("p", {"e1", "e2", "e3"}), (std::vector<bool>{true, true, true}));
        tx->savepoint();
        tx->execute("INSERT INTO effects VALUES (?)", {std::string("e1")});
        tx->savepoint();
        tx->execute("INSERT INTO effects VALUES (?)", {std::string("e2")});
        tx->rollback_to_savepoint();  // e2's handler failed after writing
        tx->unclaim("p", {"e2", "e3"});
        tx->commit();
    }
    {
        auto tx = store.begin();
        auto r = tx->execute("SELECT id FROM effects");
        ASSERT_EQ(r.rows.size(), 1u);
        EXPECT_EQ(std::get<std::string>(r.rows[0][0]), "e1");
    }
    EXPECT_TRUE(store.contains("p", "e1"));
    EXPECT_FALSE(store.contains("p", "e2"));
    EXPECT_FALSE(store.contains("p", "e3"));
}

TEST(SqliteStore, TwoConnectionsOnOneFileDedupe) {
    auto path = temp_db();
    SqliteStore a(path), b(path);
    std::atomic<int> effects{0};
    std::thread ta([&] {
        for (int i = 0; i < 100; ++i) {
            auto tx = a.begin();
            if (tx->claim("p", std::to_string(i))) ++effects;
            tx->commit();
        }
    });
    std::thread tb([&] {
        for (int i = 0; i < 100; ++i) {
            auto tx = b.begin();
            if (tx->claim("p", std::to_string(i))) ++effects;
            tx->commit();
        }
    });
    ta.join();
    tb.join();
    EXPECT_EQ(effects.load(), 100);
}

TEST(SqliteStore, HostileTableNamesAreRejectedAndNothingIsCreated) {
    auto path = temp_db();
    for (const std::string& bad : {std::string("x\"; DROP TABLE t; --"), std::string("semi;colon"),
                                   std::string("with space"), std::string("ünicode"),
                                   std::string("1starts"), std::string(""), std::string(64, 'a')}) {
        EXPECT_THROW(SqliteStore(path, bad), ConfigurationError) << bad;
    }
    EXPECT_FALSE(std::filesystem::exists(path)) << "rejected before touching the database";
    EXPECT_NO_THROW(SqliteStore(path, "_ok_Name9"));
}

TEST(SqliteStore, UnopenablePathIsAClearError) {
    try {
        SqliteStore store("/nonexistent-dir/x/y.db");
        FAIL();
    } catch (const ConfigurationError& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/x/y.db"), std::string::npos);
    }
}

TEST(Stores, OpenByUrl) {
    EXPECT_EQ(open_store("memory://")->kind(), "memory");
    auto path = temp_db();
    EXPECT_EQ(open_store("sqlite:///" + path)->kind(), "sqlite");
    EXPECT_THROW(open_store("redis-ish://x"), ConfigurationError);
    EXPECT_THROW(open_store("sqlite://"), ConfigurationError);
}
