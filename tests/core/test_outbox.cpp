// The transactional outbox on SQLite with the embedded broker (the fast tier).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <thread>

#include "outbox/cursor.hpp"  // the gap-safe cursor's pure decisions (core/src)
#include "postroom/binding.hpp"
#include "postroom/embedded/broker.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/consumer.hpp"
#include "postroom/outbox/outbox.hpp"

using namespace postroom;
using namespace postroom::outbox;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct EmbeddedOutbox : ::testing::Test {
    static inline std::atomic<int> counter{0};
    // Unique across processes too: ctest runs each test in its own process, in parallel.
    std::string name = "outbox-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    std::string url = "embedded://" + name;
    std::shared_ptr<embedded::Broker> broker = embedded::Broker::shared(name);
    std::filesystem::path path = std::filesystem::temp_directory_path() / (name + ".db");

    void SetUp() override {
        std::filesystem::remove(path);
        broker->create_topic("orders", 2);
    }
    void TearDown() override { std::filesystem::remove(path); }

    OutboxConfig config() {
        OutboxConfig c;
        c.database_url = "sqlite:///" + path.string();
        c.broker_url = url;
        c.publish_timeout = 5s;
        c.log = [](int, const std::string&) {};
        return c;
    }

    static Event event(const std::string& id) {
        Event e(id, "/shop", "order.placed");
        e.datacontenttype = "application/json";
        e.data = R"({"id":")" + id + R"("})";
        return e;
    }

    // Adds one hand-written row per (id, headers column) pair, relays once, and returns why
    // each failed row failed, by id.
    std::map<std::string, std::string> relay_rows_with_headers(
        Outbox& box, const std::vector<std::pair<std::string, std::string>>& headers) {
        auto db = box.database();
        {
            auto tx = db->begin();
            for (const auto& [id, json] : headers) {
                auto row = row_for(event(id), "order", "o1", "orders");
                row.headers_json = json;
                add(*tx, box.dialect(), "postroom_outbox", row);
            }
            tx->commit();
        }
        EXPECT_EQ(box.relay_once(), headers.size());
        std::map<std::string, std::string> why;
        for (const auto& f : box.status().failed_rows) why[f.id] = f.error;
        return why;
    }

    // Up to n messages of `topic`, waiting at most `limit` for them.
    std::vector<Message> read(const std::string& topic, std::size_t n,
                              std::chrono::milliseconds limit = 15s) {
        kafka::ConsumerConfig cc;
        cc.broker_url = url;
        cc.group_id = "reader-" + std::to_string(++counter);
        kafka::Consumer c(cc);
        // Assigned, not subscribed: no group join to wait for. "orders" has two partitions.
        c.assign({{topic, 0, kafka::Consumer::offset_beginning},
                  {topic, 1, kafka::Consumer::offset_beginning}});
        std::vector<Message> got;
        auto deadline = Clock::now() + limit;
        while (got.size() < n && Clock::now() < deadline)
            for (auto& m : c.poll_batch(n - got.size(), 200ms)) got.push_back(std::move(m));
        return got;
    }
};

}  // namespace

TEST_F(EmbeddedOutbox, CommittedRowsArePublishedRolledBackOnesNever) {
    Outbox box(config());
    auto db = box.database();
    {
        auto tx = db->begin();  // the application's transaction: business row + events
        tx->execute("CREATE TABLE orders (id TEXT PRIMARY KEY)");
        tx->execute("INSERT INTO orders VALUES ('o1')");
        add(*tx, box.dialect(), "postroom_outbox", row_for(event("e1"), "order", "o1", "orders"));
        add(*tx, box.dialect(), "postroom_outbox", row_for(event("e2"), "order", "o2", "orders"));
        tx->commit();
    }
    {
        auto tx = db->begin();
        tx->execute("INSERT INTO orders VALUES ('o3')");
        add(*tx, box.dialect(), "postroom_outbox",
            row_for(event("rolled-back"), "order", "o3", std::string("orders")));
        tx->rollback();
    }
    {
        auto tx = db->begin();
        add(*tx, box.dialect(), "postroom_outbox", row_for(event("e3"), "order", "o1", "orders"));
        tx->commit();
    }
    EXPECT_EQ(box.status().pending, 3);
    EXPECT_EQ(box.relay_once(), 3u);
    EXPECT_EQ(box.relay_once(), 0u) << "nothing left";
    auto got = read("orders", 4, 3s);  // a fourth would be the rolled-back event
    ASSERT_EQ(got.size(), 3u) << "the rolled-back event is never published";
    std::map<std::string, std::vector<std::string>> by_key;
    for (const auto& m : got) {
        auto e = cloudevents::to_event(m);
        EXPECT_EQ(e.source, "/shop");
        EXPECT_EQ(e.type, "order.placed");
        EXPECT_EQ(*e.data, R"({"id":")" + e.id + R"("})");
        by_key[*m.key].push_back(e.id);
    }
    EXPECT_EQ(by_key["o1"], (std::vector<std::string>{"e1", "e3"})) << "per-aggregate order";
    EXPECT_EQ(by_key["o2"], (std::vector<std::string>{"e2"}));
    auto s = box.status();
    EXPECT_EQ(s.pending, 0);
    EXPECT_EQ(s.sent, 3);
    EXPECT_FALSE(s.oldest_pending_age_seconds);
    EXPECT_EQ(box.purge_sent_older_than(0s), 3u);
}

TEST_F(EmbeddedOutbox, UnpublishableRowsFailWithAReasonAndTheRestFlows) {
    auto c = config();
    c.max_message_bytes = 2000;
    Outbox box(c);
    auto db = box.database();
    {
        auto tx = db->begin();
        add(*tx, box.dialect(), c.table, row_for(event("ok-1"), "order", "o1", "orders"));
        add(*tx, box.dialect(), c.table,
            row_for(event("no-topic"), "order", "o1", "no-such-topic"));
        auto big = event("too-big");
        big.data = std::string(5000, 'x');
        add(*tx, box.dialect(), c.table, row_for(big, "order", "o2", "orders"));
        add(*tx, box.dialect(), c.table, row_for(event("ok-2"), "order", "o2", "orders"));
        tx->commit();
    }
    EXPECT_EQ(box.relay_once(), 4u);
    auto s = box.status();
    EXPECT_EQ(s.sent, 2);
    ASSERT_EQ(s.failed, 2);
    ASSERT_EQ(s.failed_rows.size(), 2u);
    EXPECT_EQ(s.failed_rows[0].id, "no-topic");
    EXPECT_NE(s.failed_rows[0].error.find("opic"), std::string::npos) << s.failed_rows[0].error;
    EXPECT_EQ(s.failed_rows[1].id, "too-big");
    EXPECT_NE(s.failed_rows[1].error.find("max_message_bytes"), std::string::npos);
    EXPECT_EQ(read("orders", 2).size(), 2u);
    // After the fix (the topic exists now), a requeue publishes it.
    broker->create_topic("no-such-topic", 1);
    EXPECT_EQ(box.requeue_failed(), 2u);
    box.relay_once();
    EXPECT_EQ(box.status().sent, 3);
    EXPECT_EQ(box.status().failed, 1) << "still too big";
}

TEST_F(EmbeddedOutbox, RowsWithMalformedHeadersFailWithTheReasonAndTheRestFlows) {
    // Rows written by hand, not through row_for: the headers column must be a JSON object
    // of strings; anything else fails that row with a reason naming the fault.
    Outbox box(config());
    const std::vector<std::pair<std::string, std::string>> headers{
        {"good", R"({"source":"/desk","subject":"s-1","traceparent":"00-abc-01"})"},
        {"not-json", R"({"source": "/desk")"},
        {"an-array", R"(["source", "/desk"])"},
        {"a-number", R"({"source":"/desk","priority":3})"},
        {"nested", R"({"source":"/desk","meta":{"a":"b"}})"},
        {"trailing", R"({"source":"/desk"} x)"},
        {"after", R"({})"},
    };
    auto why = relay_rows_with_headers(box, headers);
    auto s = box.status();
    EXPECT_EQ(s.sent, 2);
    ASSERT_EQ(s.failed_rows.size(), 5u);
    EXPECT_NE(why["not-json"].find("headers are not valid JSON"), std::string::npos)
        << why["not-json"];
    EXPECT_NE(why["trailing"].find("headers are not valid JSON"), std::string::npos)
        << why["trailing"];
    EXPECT_NE(why["an-array"].find("headers must be a JSON object"), std::string::npos)
        << why["an-array"];
    EXPECT_NE(why["a-number"].find("header 'priority' must be a string"), std::string::npos)
        << why["a-number"];
    EXPECT_NE(why["nested"].find("header 'meta' must be a string"), std::string::npos)
        << why["nested"];
    auto got = read("orders", 2);
    ASSERT_EQ(got.size(), 2u);
    std::map<std::string, Event> events;
    for (const auto& m : got) {
        auto e = cloudevents::to_event(m);
        events.emplace(e.id, e);
    }
    ASSERT_EQ(events.count("good"), 1u);
    EXPECT_EQ(events.at("good").source, "/desk");
    EXPECT_EQ(events.at("good").subject, "s-1");
    EXPECT_EQ(events.at("good").extensions.at("traceparent"), "00-abc-01");
    ASSERT_EQ(events.count("after"), 1u);
    EXPECT_EQ(events.at("after").source, "/postroom/outbox") << "the outbox's own source";
}

TEST(OutboxRow, HeadersHoldEveryAttributeButIdTypeAndSpecversion) {
    Event e("e1", "/shop", "order.placed");
    e.time = "2026-11-27T08:00:00Z";
    e.subject = "o-1";
    e.datacontenttype = "application/json";
    e.dataschema = "urn:schema:order";
    e.extensions["tenant"] = "acme";
    e.extensions["alpha"] = "a";
    const auto row = row_for(e, "order", "o1", std::nullopt);
    EXPECT_EQ(row.id, "e1");
    EXPECT_EQ(row.type, "order.placed");
    EXPECT_EQ(
        row.headers_json,
        R"({"alpha":"a","datacontenttype":"application/json","dataschema":"urn:schema:order",)"
        R"("source":"/shop","subject":"o-1","tenant":"acme","time":"2026-11-27T08:00:00Z"})");
}

TEST_F(EmbeddedOutbox, RowHeadersSetAttributesButNotTheColumnsOnes) {
    // A headers column written by hand sets the event's attributes by name; id, type and
    // specversion are not attributes it may set (the row's columns own them), so such a
    // header is an invalid extension name and fails its row.
    Outbox box(config());
    const std::vector<std::pair<std::string, std::string>> headers{
        {"attrs", R"({"source":"/desk","time":"2026-11-27T08:00:00Z","dataschema":"urn:s",)"
                  R"("datacontenttype":"text/plain","x1":"v"})"},
        {"sets-id", R"({"id":"other"})"},
        {"sets-type", R"({"type":"other"})"},
        {"sets-specversion", R"({"specversion":"1.0"})"},
    };
    auto why = relay_rows_with_headers(box, headers);
    auto s = box.status();
    EXPECT_EQ(s.sent, 1);
    ASSERT_EQ(s.failed_rows.size(), 3u);
    for (const std::string name : {"id", "type", "specversion"})
        EXPECT_NE(why["sets-" + name].find("extension attribute name '" + name + "' is invalid"),
                  std::string::npos)
            << why["sets-" + name];
    auto got = read("orders", 1);
    ASSERT_EQ(got.size(), 1u);
    auto e = cloudevents::to_event(got[0]);
    EXPECT_EQ(e.id, "attrs");
    EXPECT_EQ(e.type, "order.placed");
    EXPECT_EQ(e.source, "/desk");
    EXPECT_EQ(e.time, "2026-11-27T08:00:00Z");
    EXPECT_EQ(e.dataschema, "urn:s");
    EXPECT_EQ(e.datacontenttype, "text/plain");
    EXPECT_EQ(e.extensions, (std::map<std::string, std::string>{{"x1", "v"}}));
}

TEST_F(EmbeddedOutbox, ASecondRelayWaitsAsStandbyUntilTheLeaseExpires) {
    auto c = config();
    c.publish_timeout = 1s;
    c.lease = 1500ms;
    Outbox first(c);
    Outbox second(c);
    {
        auto tx = first.database()->begin();
        add(*tx, first.dialect(), c.table, row_for(event("a"), "order", "o1", "orders"));
        tx->commit();
    }
    EXPECT_EQ(first.relay_once(), 1u);
    {
        auto tx = first.database()->begin();
        add(*tx, first.dialect(), c.table, row_for(event("b"), "order", "o1", "orders"));
        tx->commit();
    }
    EXPECT_EQ(second.relay_once(), 0u) << "the first relay holds the lease";
    EXPECT_EQ(second.counters().standby_waits, 1);
    // The first relay stops (as if killed); the lease runs out and the second takes over.
    std::this_thread::sleep_for(c.lease + 200ms);
    auto deadline = Clock::now() + 10s;
    std::size_t n = 0;
    while (n == 0 && Clock::now() < deadline) {
        n = second.relay_once();
        if (n == 0) std::this_thread::sleep_for(200ms);
    }
    EXPECT_EQ(n, 1u);
    EXPECT_EQ(read("orders", 2).size(), 2u);
}

TEST_F(EmbeddedOutbox, ARelayClosedCleanlyHandsTheLeaseOverAtOnce) {
    auto c = config();
    c.lease = 60s;
    Outbox first(c);
    Outbox second(c);
    auto add_one = [&](const std::string& id) {
        auto tx = first.database()->begin();
        add(*tx, first.dialect(), c.table, row_for(event(id), "order", "o1", "orders"));
        tx->commit();
    };
    add_one("a");
    EXPECT_EQ(first.relay_once(), 1u);
    add_one("b");
    EXPECT_EQ(second.relay_once(), 0u) << "the first relay holds the lease";
    first.close();
    EXPECT_EQ(second.relay_once(), 1u) << "taken over without waiting the 60 s lease";
    EXPECT_EQ(second.counters().standby_waits, 1);
    EXPECT_EQ(read("orders", 2).size(), 2u);
}

TEST_F(EmbeddedOutbox, HostileTableNamesAreRejectedAndNothingIsCreated) {
    for (const std::string& bad : std::vector<std::string>{
             "x\"; DROP TABLE orders; --", "t;", "ünïcode", "1abc", "", std::string(64, 'a')}) {
        auto c = config();
        c.table = bad;
        EXPECT_THROW(Outbox box(c), ConfigurationError) << bad;
    }
    EXPECT_FALSE(std::filesystem::exists(path)) << "the database was not even opened";
    auto c = config();
    c.table = std::string(63, 'a');
    EXPECT_NO_THROW(Outbox box(c));
    EXPECT_THROW(insert_statement(Dialect::sqlite, "a b"), ConfigurationError);
}

TEST_F(EmbeddedOutbox, WrongDatabaseUrlsAreClearErrors) {
    auto c = config();
    c.database_url = "mysql://localhost/db";
    try {
        Outbox box(c);
        FAIL();
    } catch (const ConfigurationError& e) {
        EXPECT_NE(std::string(e.what()).find("sqlite:///path.db"), std::string::npos);
    }
    EXPECT_THROW(row_for(event("x"), "", "o1", std::nullopt), CodecError);
    EXPECT_THROW(row_for(event("x"), "order", "", std::nullopt), CodecError);
}

TEST_F(EmbeddedOutbox, CreatesOnlyItsOwnTablesAndItsRetentionDeletesOldSentRows) {
    auto c = config();
    c.retention = 1s;
    c.purge_interval = 0s;
    Outbox box(c);
    {
        auto tx = box.database()->begin();
        auto r = tx->execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
        std::vector<std::string> names;
        for (const auto& row : r.rows) names.push_back(std::get<std::string>(row.at(0)));
        EXPECT_EQ(names, (std::vector<std::string>{"postroom_outbox", "postroom_outbox_relays",
                                                   "sqlite_sequence"}))
            << "no idempotency table comes with the outbox";
        add(*tx, box.dialect(), c.table, row_for(event("old"), "order", "o1", "orders"));
        tx->commit();
    }
    EXPECT_EQ(box.relay_once(), 1u);
    EXPECT_EQ(box.status().sent, 1);
    std::this_thread::sleep_for(2100ms);  // sent_at is in ms, the retention in whole seconds
    box.relay_once();
    EXPECT_EQ(box.counters().purged, 1);
    EXPECT_EQ(box.status().sent, 0);
}

TEST(OutboxRouting, TopicTemplatesAcceptOnlyRoutedByValueAndNameTheRest) {
    EXPECT_NO_THROW(validate_topic_template("outbox.event.${routedByValue}"));
    EXPECT_NO_THROW(validate_topic_template("fixed-topic"));
    try {
        validate_topic_template("x.${aggregateType}.${routedByValue}.${id}.${open");
        FAIL();
    } catch (const ConfigurationError& e) {
        const std::string what = e.what();
        for (const char* name : {"${aggregateType}", "${id}", "${open (unclosed)"})
            EXPECT_NE(what.find(name), std::string::npos) << name << " in: " << what;
        EXPECT_EQ(what.find("${routedByValue},"), std::string::npos) << what;
    }
    EXPECT_EQ(expand_topic_template("outbox.event.${routedByValue}", "order"),
              "outbox.event.order");
    EXPECT_EQ(expand_topic_template("${routedByValue}-${routedByValue}", "a"), "a-a");
    EXPECT_EQ(Routing::debezium().topic_template, "outbox.event.${routedByValue}");
    EXPECT_EQ(Routing::debezium().route_by_field, "aggregatetype");
}

TEST(OutboxRouting, AdditionalPlacementFollowsDebeziumsSyntaxWithHeadersOnly) {
    EXPECT_EQ(parse_additional_placement("type:header:eventType, tenant:header"),
              (std::vector<AdditionalField>{{"type", "eventType"}, {"tenant", "tenant"}}));
    EXPECT_TRUE(parse_additional_placement("").empty());
    EXPECT_THROW(parse_additional_placement("type:envelope:eventType"), ConfigurationError);
    EXPECT_THROW(parse_additional_placement("p:partition"), ConfigurationError);
    EXPECT_THROW(parse_additional_placement("type"), ConfigurationError);
    EXPECT_THROW(parse_additional_placement("x\"y:header"), ConfigurationError);
}

TEST_F(EmbeddedOutbox, DebeziumRoutingSendsToOutboxEventWithTheIdHeader) {
    broker->create_topic("outbox.event.order", 2);
    auto c = config();
    c.routing = Routing::debezium();
    c.routing.additional_fields = {{"type", "eventType"}};
    Outbox box(c);
    {
        auto tx = box.database()->begin();
        add(*tx, box.dialect(), c.table, row_for(event("e1"), "order", "o1", std::nullopt));
        tx->commit();
    }
    EXPECT_EQ(box.relay_once(), 1u);
    auto got = read("outbox.event.order", 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(*got[0].key, "o1");
    EXPECT_EQ(*got[0].value, R"({"id":"e1"})");
    ASSERT_TRUE(find_header(got[0].headers, "id"));
    EXPECT_EQ(find_header(got[0].headers, "id")->value, "e1");
    ASSERT_TRUE(find_header(got[0].headers, "eventType"));
    EXPECT_EQ(find_header(got[0].headers, "eventType")->value, "order.placed");
    EXPECT_EQ(cloudevents::to_event(got[0]).id, "e1") << "still a CloudEvent";

    auto both = config();
    both.topic = "orders";
    both.routing = Routing::debezium();
    EXPECT_THROW(Outbox again(both), ConfigurationError);
    auto missing = config();
    missing.routing.route_by_field = "category";
    EXPECT_THROW(Outbox again(missing), ConfigurationError) << "no such column";
}

TEST_F(EmbeddedOutbox, ATableWithTheEventColumnsOnlyIsRefusedNamingTheMissingOnes) {
    {
        auto db = stores::open_database("sqlite:///" + path.string());
        auto tx = db->begin();
        tx->execute(
            "CREATE TABLE debezium_outbox (id TEXT NOT NULL, aggregatetype TEXT NOT NULL, "
            "aggregateid TEXT NOT NULL, type TEXT NOT NULL, payload TEXT)");
        tx->commit();
    }
    auto c = config();
    c.table = "debezium_outbox";
    try {
        Outbox box(c);
        FAIL();
    } catch (const ConfigurationError& e) {
        EXPECT_NE(std::string(e.what()).find(
                      "seq, headers, topic, created_at, status, attempts, sent_at, error"),
                  std::string::npos)
            << e.what();
    }
}

// The PostgreSQL cursor's decisions, without a database (core/src/outbox/cursor.hpp).
namespace {
using outbox::detail::CursorState;
using outbox::detail::Gap;
using outbox::detail::Snapshot;

// An xid source for advance() that counts how often it is asked.
struct XidAfterRead {
    uint64_t xid;
    int asked = 0;
    std::function<uint64_t()> fn() {
        return [this] {
            ++asked;
            return xid;
        };
    }
};
}  // namespace

TEST(OutboxCursor, SnapshotsParseAndTellWhichTransactionsEnded) {
    const auto s = Snapshot::parse("10:20:12,15");
    EXPECT_EQ(s.xmin, 10u);
    EXPECT_EQ(s.xmax, 20u);
    EXPECT_EQ(s.running, (std::vector<uint64_t>{12, 15}));
    EXPECT_TRUE(s.ended(9));    // below xmin
    EXPECT_FALSE(s.ended(12));  // listed as running
    EXPECT_TRUE(s.ended(13));   // below xmax, not listed
    EXPECT_FALSE(s.ended(20));  // at or above xmax: not yet known to have ended
    EXPECT_FALSE(s.ended(25));
    EXPECT_TRUE(Snapshot::parse("7:7:").running.empty());
    EXPECT_THROW(Snapshot::parse("garbage"), TransportError);
}

TEST(OutboxCursor, AGapEndsWhenItsListedTransactionsAndTheXidsFromXmaxOnHaveEnded) {
    // Listed 12 as running; xids 20..22 were taken between the read's xmax and the xid
    // taken after the read (the xmax rule).
    const Gap g{5, 7, {12}, 20, 23, false};
    EXPECT_TRUE(g.ended(Snapshot::parse("13:30:")));
    EXPECT_TRUE(g.ended(Snapshot::parse("21:30:")));
    EXPECT_FALSE(g.ended(Snapshot::parse("13:22:")));    // 22 not known to have ended
    EXPECT_FALSE(g.ended(Snapshot::parse("13:30:21")));  // 21 still running
    EXPECT_FALSE(g.ended(Snapshot::parse("12:30:12")));  // 12 still running
    std::vector<Gap> gaps{g, Gap{9, 9, {40}, 20, 20, false}};
    outbox::detail::mark_ended(gaps, Snapshot::parse("13:30:"));
    EXPECT_TRUE(gaps[0].ready);
    EXPECT_FALSE(gaps[1].ready);
}

TEST(OutboxCursor, AMissingSeqOpensAGapOnlyWhileATransactionCouldStillCommitIt) {
    {  // a transaction listed as running
        CursorState at;
        XidAfterRead xid{106};
        outbox::detail::advance(at, {1, 2, 4}, false, Snapshot::parse("100:105:101"), xid.fn());
        EXPECT_EQ(at.read_from, 4);
        ASSERT_EQ(at.gaps.size(), 1u);
        EXPECT_EQ(at.gaps[0].lo, 3);
        EXPECT_EQ(at.gaps[0].hi, 3);
        EXPECT_EQ(at.gaps[0].waits_for, (std::vector<uint64_t>{101}));
        EXPECT_EQ(at.gaps[0].xids_from, 105u);
        EXPECT_EQ(at.gaps[0].xids_below, 106u);
        EXPECT_FALSE(at.gaps[0].ready);
        EXPECT_EQ(xid.asked, 1);
    }
    {  // none running, and no xid taken since the snapshot: the seq will never appear
        CursorState at;
        XidAfterRead xid{105};
        outbox::detail::advance(at, {1, 2, 4}, false, Snapshot::parse("100:105:"), xid.fn());
        EXPECT_EQ(at.read_from, 4);
        EXPECT_TRUE(at.gaps.empty());
    }
    {  // none listed, but an xid taken after the snapshot (the xmax rule)
        CursorState at;
        XidAfterRead xid{107};
        outbox::detail::advance(at, {1, 4, 9}, false, Snapshot::parse("100:105:"), xid.fn());
        EXPECT_EQ(at.read_from, 9);
        ASSERT_EQ(at.gaps.size(), 2u);
        EXPECT_EQ(at.gaps[0].lo, 2);
        EXPECT_EQ(at.gaps[0].hi, 3);
        EXPECT_EQ(at.gaps[1].lo, 5);
        EXPECT_EQ(at.gaps[1].hi, 8);
        EXPECT_EQ(at.gaps[1].xids_from, 105u);
        EXPECT_EQ(at.gaps[1].xids_below, 107u);
    }
    {  // no seq missing: no xid is taken
        CursorState at{3, {}};
        XidAfterRead xid{200};
        outbox::detail::advance(at, {4, 5, 6}, false, Snapshot::parse("100:105:101"), xid.fn());
        EXPECT_EQ(at.read_from, 6);
        EXPECT_TRUE(at.gaps.empty());
        EXPECT_EQ(xid.asked, 0);
    }
    {  // nothing read: the cursor stays
        CursorState at{3, {}};
        XidAfterRead xid{200};
        outbox::detail::advance(at, {}, false, Snapshot{}, xid.fn());
        EXPECT_EQ(at.read_from, 3);
        EXPECT_TRUE(at.gaps.empty());
    }
}

TEST(OutboxCursor, AReadSettlesReadyGapsAndNarrowsOpenOnesToTheSeqsStillMissing) {
    {  // ready: the covered gap is settled, whatever was found in it
        CursorState at{10, {Gap{3, 5, {101}, 105, 106, true}}};
        XidAfterRead xid{200};
        outbox::detail::advance(at, {4, 11}, false, Snapshot::parse("100:105:"), xid.fn());
        EXPECT_EQ(at.read_from, 11);
        EXPECT_TRUE(at.gaps.empty());
    }
    {  // open: the seqs found leave the gap, the rest stays open
        CursorState at{10, {Gap{3, 5, {101}, 105, 106, false}}};
        XidAfterRead xid{200};
        outbox::detail::advance(at, {4}, false, Snapshot::parse("100:105:101"), xid.fn());
        EXPECT_EQ(at.read_from, 10);
        ASSERT_EQ(at.gaps.size(), 2u);
        EXPECT_EQ(std::make_pair(at.gaps[0].lo, at.gaps[0].hi), std::make_pair(3L, 3L));
        EXPECT_EQ(std::make_pair(at.gaps[1].lo, at.gaps[1].hi), std::make_pair(5L, 5L));
        EXPECT_EQ(at.gaps[0].waits_for, (std::vector<uint64_t>{101}));
    }
    {  // a full read covers a gap only up to its last row: the rest is read next time
        CursorState at{10, {Gap{3, 8, {101}, 105, 106, false}}};
        XidAfterRead xid{200};
        outbox::detail::advance(at, {4, 5}, true, Snapshot::parse("100:105:101"), xid.fn());
        EXPECT_EQ(at.read_from, 10);
        ASSERT_EQ(at.gaps.size(), 2u);
        EXPECT_EQ(std::make_pair(at.gaps[0].lo, at.gaps[0].hi), std::make_pair(3L, 3L));
        EXPECT_EQ(std::make_pair(at.gaps[1].lo, at.gaps[1].hi), std::make_pair(6L, 8L));
        EXPECT_FALSE(at.gaps[1].ready);
    }
}

TEST(OutboxCursor, TheCursorMovesOnlyBelowTheFirstSeqStillOpenAndNeverBack) {
    const CursorState at{20, {Gap{15, 16, {}, 0, 0, false}}};
    // Row 9 of the batch neither sent nor failed.
    EXPECT_EQ(outbox::detail::through_after(at, 5, {8, 9, 10}, {10, 8}, {}), 8);
    // All settled: below the next batch in flight.
    EXPECT_EQ(outbox::detail::through_after(at, 5, {8, 9, 10}, {8, 9, 10}, {12}), 11);
    // All settled, nothing after it in flight: below the gap.
    EXPECT_EQ(outbox::detail::through_after(at, 5, {8, 9, 10}, {8, 9, 10}, {}), 14);
    const CursorState no_gaps{20, {}};
    EXPECT_EQ(outbox::detail::through_after(no_gaps, 5, {18, 19, 20}, {18, 19, 20}, {}), 20);
    // Never below what is already stored.
    EXPECT_EQ(outbox::detail::through_after(at, 30, {8, 9, 10}, {}, {}), 30);
}
