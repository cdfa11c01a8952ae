// Redis Streams as a transport, against the real server (POSTROOM_REDIS_URL): the shared
// transport contract, then what is Redis's own: pending entries, claims, deletions while
// pending, NOGROUP recovery, the delivery count and trimming.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <cstdlib>

#include "postroom/broker_url.hpp"
#include "postroom/error.hpp"
#include "postroom/redis/streams.hpp"
#include "service_urls.hpp"
#include "transport_contract.hpp"

using namespace postroom;
using namespace postroom::redis;
using namespace std::chrono_literals;

namespace {

std::string streams_url() {
    return redis_service_url();
}

struct RedisBackend {
    std::string url() const { return streams_url(); }
    void create_topic(const std::string&) {}  // streams are created by their first use
    void delete_topic(const std::string& stream) { StreamAdmin(url()).remove_stream(stream); }
    transport::Properties consumer_properties() const {
        return {{"claim_min_idle_ms", "300"}, {"claim_interval_ms", "100"}};
    }
};

// A raw command, for what the tests do behind postroom's back.
void raw(const std::vector<std::string>& args) {
    auto parsed = parse_broker_url(streams_url());
    redisContext* c = redisConnect(parsed.hosts[0].host.c_str(), parsed.hosts[0].port);
    ASSERT_TRUE(c && !c->err);
    std::vector<const char*> argv;
    std::vector<size_t> len;
    for (auto& a : args) {
        argv.push_back(a.data());
        len.push_back(a.size());
    }
    if (parsed.redis_db) freeReplyObject(redisCommand(c, "SELECT %d", parsed.redis_db));
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), len.data()));
    ASSERT_TRUE(r);
    EXPECT_NE(r->type, REDIS_REPLY_ERROR) << std::string(r->str, r->len);
    freeReplyObject(r);
    redisFree(c);
}

struct RedisStreams : ::testing::Test {
    static inline std::atomic<int> counter{0};
    std::string stream =
        "gtest-stream-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    StreamAdmin admin{streams_url()};
    std::vector<std::string> lines;

    void TearDown() override {
        admin.remove_stream(stream);
        admin.remove_stream(stream + ".dlq");
    }
    void add(int n) {
        StreamProducer p({streams_url(), std::nullopt, 5s});
        std::vector<OutgoingMessage> batch;
        for (int i = 0; i < n; ++i)
            batch.push_back({stream, "k", std::to_string(i), {}, std::nullopt});
        for (auto& r : p.add_batch(batch)) ASSERT_TRUE(r.ok()) << r.error;
    }
    std::unique_ptr<StreamConsumer> consumer(const std::string& name,
                                             std::chrono::milliseconds min_idle = 30s) {
        StreamConsumerConfig c;
        c.url = streams_url();
        c.group = "g";
        c.consumer = name;
        c.claim_min_idle = min_idle;
        c.claim_interval = 50ms;
        c.log = [this](int, const std::string& line) { lines.push_back(line); };
        auto out = std::make_unique<StreamConsumer>(c);
        out->subscribe({stream});
        return out;
    }
    static std::vector<Message> take(StreamConsumer& c, std::size_t n,
                                     std::chrono::milliseconds limit = 10s) {
        std::vector<Message> out;
        auto until = std::chrono::steady_clock::now() + limit;
        while (out.size() < n && std::chrono::steady_clock::now() < until)
            for (auto& m : c.poll_batch(n - out.size(), 100ms)) out.push_back(std::move(m));
        return out;
    }
};

}  // namespace

INSTANTIATE_TYPED_TEST_SUITE_P(Redis, TransportContract, ::testing::Types<RedisBackend>);

TEST(RedisStreamBinding, FieldsRoundTripEveryHeaderAndTheKeyAndValue) {
    OutgoingMessage m{"s",
                      "key",
                      std::string("\0\xff", 2),
                      {{"key", "k"},
                       {"data", "d"},
                       {"\\x", "y"},
                       {"\\~z", "w"},
                       {"n", std::nullopt},
                       {"ce_id", "1"}},
                      std::nullopt};
    auto fields = to_fields(m);
    EXPECT_EQ(fields[0], (std::pair<std::string, std::string>{"key", "key"}));
    auto back = from_fields("s", "1700000000123-4", fields);
    EXPECT_EQ(back.key, m.key);
    EXPECT_EQ(back.value, m.value);
    EXPECT_EQ(back.headers, m.headers);
    EXPECT_EQ(back.timestamp_ms, 1700000000123);
    EXPECT_EQ(back.position(), "1700000000123-4");
}

TEST_F(RedisStreams, ARestartUnderTheSameNameTakesUpItsOwnPendingEntriesFirst) {
    add(3);
    {
        auto c = consumer("worker-1");
        auto got = take(*c, 3);
        ASSERT_EQ(got.size(), 3u);
        EXPECT_EQ(got[0].delivery_count, 1);
        // dies: nothing acknowledged
    }
    add(1);
    auto c = consumer("worker-1");
    auto got = take(*c, 4);
    ASSERT_EQ(got.size(), 4u);
    EXPECT_EQ(*got[0].value, "0");
    EXPECT_EQ(got[0].delivery_count, 2);
    EXPECT_EQ(*got[3].value, "0") << "the new entry comes after the pending ones";
    EXPECT_EQ(got[3].delivery_count, 1);
    for (auto& m : got) c->mark_done(m);
    EXPECT_EQ(c->commit(), 4u);
    EXPECT_TRUE(admin.pending(stream, "g").empty());
}

TEST_F(RedisStreams, ADeadConsumersPendingEntriesAreClaimedAfterTheMinimumIdleTime) {
    add(3);
    {
        auto dead = consumer("worker-dead");
        ASSERT_EQ(take(*dead, 3).size(), 3u);
    }
    auto c = consumer("worker-2", 300ms);
    auto got = take(*c, 3);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(c->counters().claimed, 3);
    EXPECT_EQ(got[0].delivery_count, 2);
    for (auto& m : got) c->mark_done(m);
    c->commit();
    EXPECT_TRUE(admin.pending(stream, "g").empty()) << "no entry stuck in the pending list";
}

TEST_F(RedisStreams, EntriesDeletedWhilePendingAreReportedAndAcknowledged) {
    add(3);
    std::vector<Message> first;
    {
        auto c = consumer("worker-1");
        first = take(*c, 3);
        ASSERT_EQ(first.size(), 3u);
    }
    EXPECT_EQ(admin.remove_entries(stream, {first[1].id}), 1u);
    auto c = consumer("worker-1");
    auto got = take(*c, 2);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(c->counters().deleted_while_pending, 1);
    ASSERT_FALSE(lines.empty());
    EXPECT_NE(lines.back().find(first[1].id), std::string::npos) << lines.back();
    for (auto& m : got) c->mark_done(m);
    c->commit();
    EXPECT_TRUE(admin.pending(stream, "g").empty());
}

TEST_F(RedisStreams, AVanishedGroupIsRecreatedLoudlyAndNothingIsSkipped) {
    add(2);
    auto c = consumer("worker-1");
    auto got = take(*c, 2);
    ASSERT_EQ(got.size(), 2u);
    raw({"XGROUP", "DESTROY", stream, "g"});
    add(1);
    auto again = take(*c, 3);
    EXPECT_EQ(again.size(), 3u) << "everything is read again from the group's start id";
    EXPECT_EQ(c->counters().groups_recreated, 1);
    bool warned = false;
    for (auto& l : lines) warned |= l.find("is gone") != std::string::npos;
    EXPECT_TRUE(warned);
}

TEST_F(RedisStreams, LagAndPendingPerGroup) {
    add(5);
    auto c = consumer("worker-1");
    auto got = take(*c, 2);
    ASSERT_EQ(got.size(), 2u);
    auto groups = admin.groups(stream);
    ASSERT_EQ(groups.size(), 1u);
    EXPECT_EQ(groups[0].name, "g");
    EXPECT_EQ(groups[0].pending, 2);
    EXPECT_EQ(groups[0].lag, 3);
    std::this_thread::sleep_for(1100ms);
    c->poll_batch(1, 10ms);  // refreshes the lag it reports
    EXPECT_EQ(c->lag().at({stream, 0}), 2);
}

TEST_F(RedisStreams, ApproximateTrimmingKeepsTheStreamBounded) {
    StreamProducer p({streams_url(), 100, 5s});
    std::vector<OutgoingMessage> batch(
        5000, OutgoingMessage{stream, std::nullopt, "x", {}, std::nullopt});
    p.add_batch(batch);
    EXPECT_LT(admin.length(stream), 1000);
    EXPECT_GE(admin.length(stream), 100);
}

// A batch goes to Redis in one command; an entry Redis refuses (its key holds a string, not
// a stream) gets its own error and the others are added, in order, with their ids.
TEST_F(RedisStreams, ABatchReportsEachEntryAndARefusedOneDoesNotStopTheOthers) {
    const auto occupied = stream + "-string";
    raw({"SET", occupied, "not a stream"});
    StreamProducer p({streams_url(), std::nullopt, 5s});
    std::vector<OutgoingMessage> batch{{stream, "k", "first", {}, std::nullopt},
                                       {occupied, "k", "refused", {}, std::nullopt},
                                       {stream, "k", "third", {}, std::nullopt}};
    auto results = p.add_batch(batch);
    raw({"DEL", occupied});
    ASSERT_EQ(results.size(), 3u);
    EXPECT_TRUE(results[0].ok()) << results[0].error;
    EXPECT_NE(results[1].error.find("WRONGTYPE"), std::string::npos) << results[1].error;
    EXPECT_TRUE(results[2].ok()) << results[2].error;
    EXPECT_LT(results[0].id, results[2].id);
    auto c = consumer("reader");
    auto got = take(*c, 2);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].value, "first");
    EXPECT_EQ(got[1].value, "third");
}

// Batches sent without waiting: their reports come in order, when one is waited for (a
// later batch's wait reports the earlier ones too), when a command sent afterwards reads
// their replies first, or at close.
TEST_F(RedisStreams, BatchesSentWithoutWaitingAreReportedInTheOrderSent) {
    const auto occupied = stream + "-string";
    raw({"SET", occupied, "not a stream"});
    StreamProducer p({streams_url(), std::nullopt, 5s});
    auto first = p.send_batch(
        {{stream, "k", "a1", {}, std::nullopt}, {stream, "k", "a2", {}, std::nullopt}});
    auto second = p.send_batch(
        {{occupied, "k", "refused", {}, std::nullopt}, {stream, "k", "b2", {}, std::nullopt}});
    EXPECT_EQ(p.in_flight(), 4u);
    EXPECT_EQ(first->pending(), 2u) << "nothing is read before it is asked for";
    p.wait(*second);
    EXPECT_TRUE(first->done());
    EXPECT_TRUE(second->done());
    EXPECT_EQ(p.in_flight(), 0u);
    EXPECT_EQ(first->failed(), 0u);
    EXPECT_EQ(second->failed(), 1u);
    EXPECT_NE(second->reports()[0].error_message().find("WRONGTYPE"), std::string::npos);
    EXPECT_LT(first->reports()[1].id, second->reports()[1].id);
    raw({"DEL", occupied});

    auto third = p.send_batch({{stream, "k", "c1", {}, std::nullopt}});
    const auto later = p.add({stream, "k", "after", {}, std::nullopt});  // reads c1's reply first
    p.wait(*third);
    ASSERT_TRUE(third->reports()[0].ok()) << third->reports()[0].error_message();
    EXPECT_LT(third->reports()[0].id, later);
    auto fourth = p.send_batch({{stream, "k", "d1", {}, std::nullopt}});
    p.close();
    EXPECT_TRUE(fourth->done()) << "closing reports what was in flight";
    EXPECT_TRUE(fourth->reports()[0].ok());
    auto c = consumer("reader");
    auto got = take(*c, 6);
    ASSERT_EQ(got.size(), 6u);
    std::vector<std::string> values;
    for (const auto& m : got) values.push_back(*m.value);
    EXPECT_EQ(values, (std::vector<std::string>{"a1", "a2", "b2", "c1", "after", "d1"}));
}

TEST_F(RedisStreams, TheRuntimeDeadLettersAnEntryDeliveredMoreOftenThanTheAttemptLimit) {
    Event e("poison-1", "urn:test", "t");
    {
        StreamProducer p({streams_url(), std::nullopt, 5s});
        p.add(cloudevents::to_message(e, stream, "k"));
    }
    for (int i = 0; i < 3; ++i) {  // three consumers named alike die holding it
        auto c = consumer("crashing");
        ASSERT_EQ(take(*c, 1).size(), 1u);
    }
    runtime::ProcessorConfig config;
    config.name = "p";
    config.group_id = "g";
    config.broker_url = streams_url();
    config.topics = {stream};
    config.retry.max_attempts = 3;
    config.consumer_properties = {{"consumer", "crashing"}};
    config.commit_interval = 0ms;
    config.log = [](int, const std::string&) {};
    int calls = 0;
    runtime::Processor processor(config, [&](const Event&, runtime::HandlerContext&) { ++calls; });
    for (int i = 0; i < 50 && processor.counters().dead_lettered == 0; ++i)
        processor.run_once(100ms);
    processor.close();
    EXPECT_EQ(calls, 0);
    EXPECT_EQ(processor.counters().dead_lettered, 1);
    auto letters = admin.range(stream + ".dlq");
    ASSERT_EQ(letters.size(), 1u);
    auto* type = find_header(letters[0].headers, dlt::error_type);
    ASSERT_TRUE(type && type->value);
    EXPECT_EQ(*type->value, "postroom::DeliveryLimitExceeded");
    EXPECT_TRUE(admin.pending(stream, "g").empty());
}

TEST(RedisStreamErrors, AnUnreachableServerAndABadUrlSayWhatToDo) {
    StreamProducer p({"redis://127.0.0.1:1/0", std::nullopt, 1s});
    try {
        p.add({"s", std::nullopt, "x", {}, std::nullopt});
        FAIL() << "no error";
    } catch (const TransportError& e) {
        EXPECT_NE(std::string(e.what()).find("is Redis running"), std::string::npos) << e.what();
        EXPECT_EQ(e.retriable(), Retriable::yes);
    }
    EXPECT_THROW(StreamProducer({"kafka://127.0.0.1:1", std::nullopt, 1s}), ConfigurationError);
    StreamConsumerConfig c;
    c.url = streams_url();
    EXPECT_THROW(StreamConsumer{c}, ConfigurationError) << "no group";
}
