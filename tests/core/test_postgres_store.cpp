// The PostgreSQL idempotency store against the real server (POSTROOM_PG_URL).
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "postroom/error.hpp"
#include "postroom/stores/store.hpp"
#include "store_contract.hpp"

using namespace postroom;
using namespace postroom::stores;

namespace {

std::string pg_url() {
    const char* url = std::getenv("POSTROOM_PG_URL");
    if (!url || !*url) {
        ADD_FAILURE() << "POSTROOM_PG_URL is not set; start PostgreSQL with scripts/services.sh "
                         "start postgres and export its URL";
        return "postgresql://postgres@127.0.0.1:1/postroom";
    }
    return url;
}

std::string unique_table() {
    static std::mt19937_64 rng(std::random_device{}());
    return "gtest_" + std::to_string(rng() % 1000000000);
}

}  // namespace

template <>
struct StoreFactory<PostgresStore> {
    static std::shared_ptr<IdempotencyStore> make() {
        return std::make_shared<PostgresStore>(pg_url(), unique_table());
    }
};
using PostgresStores = ::testing::Types<PostgresStore>;
INSTANTIATE_TYPED_TEST_SUITE_P(Postgres, StoreContract, PostgresStores);

TEST(PostgresStore, HandlerWritesCommitOrRollBackWithTheMark) {
    auto table = unique_table();
    PostgresStore store(pg_url(), table);
    {
        auto tx = store.begin();
        tx->execute("CREATE TABLE " + table + "_effects (id text, amount bigint, body bytea)");
        tx->commit();
    }
    {
        auto tx = store.begin();
        ASSERT_TRUE(tx->claim("p", "e1"));
        tx->execute("INSERT INTO " + table + "_effects VALUES ($1, $2, $3)",
                    {std::string("e1"), int64_t{5}, Blob{std::string("\x00\xff", 2)}});
        // rolled back by the destructor: the handler failed
    }
    EXPECT_FALSE(store.contains("p", "e1"));
    {
        auto tx = store.begin();
        ASSERT_TRUE(tx->claim("p", "e1"));
        tx->execute("INSERT INTO " + table + "_effects VALUES ($1, $2, $3)",
                    {std::string("e1"), int64_t{5}, Blob{std::string("\x00\xff", 2)}});
        tx->commit();
    }
    auto tx = store.begin();
    auto r = tx->execute("SELECT id, amount, body FROM " + table + "_effects");
    ASSERT_EQ(r.rows.size(), 1u);
    EXPECT_EQ(std::get<std::string>(r.rows[0][0]), "e1");
    EXPECT_EQ(std::get<int64_t>(r.rows[0][1]), 5);
    EXPECT_EQ(std::get<Blob>(r.rows[0][2]).bytes, std::string("\x00\xff", 2));
    tx->execute("DROP TABLE " + table + "_effects");
    tx->execute("DROP TABLE " + table);
    tx->commit();
}

TEST(PostgresStore, HostileTableNamesAreRejectedBeforeTouchingTheDatabase) {
    for (const std::string& bad : {std::string("x\"; DROP TABLE t; --"), std::string("semi;colon"),
                                   std::string("ünicode"), std::string(64, 'a'), std::string("")}) {
        EXPECT_THROW(PostgresStore(pg_url(), bad), ConfigurationError) << bad;
    }
}

TEST(PostgresStore, UnreachableServerIsARetriableStorageError) {
    try {
        PostgresStore store("postgresql://postroom:secret@127.0.0.1:1/none?connect_timeout=2");
        FAIL();
    } catch (const StorageError& e) {
        std::string what = e.what();
        EXPECT_EQ(e.retriable(), Retriable::yes);
        EXPECT_NE(what.find("127.0.0.1:1"), std::string::npos) << what;
        EXPECT_EQ(what.find("secret"), std::string::npos) << "the password is redacted: " << what;
        EXPECT_NE(what.find("is it running"), std::string::npos) << what;
    }
}

TEST(PostgresStore, SqlErrorsNameTheStatement) {
    PostgresStore store(pg_url(), unique_table());
    auto tx = store.begin();
    try {
        tx->execute("SELECT * FROM no_such_table_anywhere");
        FAIL();
    } catch (const StorageError& e) {
        EXPECT_NE(std::string(e.what()).find("no_such_table_anywhere"), std::string::npos);
        EXPECT_EQ(e.retriable(), Retriable::no);
    }
}

TEST(PostgresStore, SavepointsUndoOneEventOfABatch) {
    auto table = unique_table();
    PostgresStore store(pg_url(), table);
    {
        auto tx = store.begin();
        tx->execute("CREATE TABLE " + table + "_effects (id text PRIMARY KEY)");
        tx->commit();
    }
    {
        auto tx = store.begin();
        ASSERT_EQ(tx->claim_batch("p", {"e1", "e2", "e3", "e4"}),
                  (std::vector<bool>{true, true, true, true}));
        tx->savepoint();
        tx->execute("INSERT INTO " + table + "_effects VALUES ($1)", {std::string("e1")});
        tx->savepoint();
        tx->execute("INSERT INTO " + table + "_effects VALUES ($1)", {std::string("e2")});
        tx->rollback_to_savepoint();  // e2's handler failed after writing
        tx->savepoint();
        // A statement that fails inside an event leaves the transaction usable after the
        // rollback to its savepoint.
        EXPECT_THROW(
            tx->execute("INSERT INTO " + table + "_effects VALUES ($1)", {std::string("e1")}),
            StorageError);
        tx->rollback_to_savepoint();
        tx->savepoint();
        tx->execute("INSERT INTO " + table + "_effects VALUES ($1)", {std::string("e4")});
        tx->unclaim("p", {"e2", "e3"});
        tx->commit();
    }
    auto tx = store.begin();
    auto r = tx->execute("SELECT id FROM " + table + "_effects ORDER BY id");
    ASSERT_EQ(r.rows.size(), 2u);
    EXPECT_EQ(std::get<std::string>(r.rows[0][0]), "e1");
    EXPECT_EQ(std::get<std::string>(r.rows[1][0]), "e4");
    EXPECT_FALSE(store.contains("p", "e2"));
    EXPECT_FALSE(store.contains("p", "e3"));
    EXPECT_TRUE(store.contains("p", "e4"));
    tx->execute("DROP TABLE " + table + "_effects");
    tx->execute("DROP TABLE " + table);
    tx->commit();
}
