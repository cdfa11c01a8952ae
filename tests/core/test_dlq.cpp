// Dead-letter tooling: decoding every header convention, fingerprints and groups (unit), and
// the dead-letter queue workspace on the embedded broker (list, stats, replay, resolve).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>

#include "dlq/ledger.hpp"
#include "postroom/dlq/dead_letters.hpp"
#include "postroom/dlq/queue.hpp"
#include "postroom/embedded/broker.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/admin.hpp"
#include "postroom/kafka/consumer.hpp"
#include "postroom/kafka/producer.hpp"

using namespace postroom;
using namespace postroom::dlq;
using namespace std::chrono_literals;

namespace {

Message letter(Headers headers, int64_t offset = 7, int64_t ts = 1000) {
    Message m;
    m.topic = "orders.dlq";
    m.partition = 1;
    m.offset = offset;
    m.key = "k";
    m.value = "v";
    m.timestamp_ms = ts;
    m.headers = std::move(headers);
    return m;
}

std::string be(int64_t v, int bytes) {
    std::string out(static_cast<std::size_t>(bytes), '\0');
    for (int i = bytes - 1; i >= 0; --i) {
        out[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
        v >>= 8;
    }
    return out;
}

}  // namespace

TEST(DeadLetterDecoding, PostroomHeaders) {
    auto d = decode(letter({{"postroom-dlt-reason", "non-retryable"},
                            {"postroom-dlt-error-type", "ValueError"},
                            {"postroom-dlt-error-message", "bad order 42"},
                            {"postroom-dlt-original-topic", "orders"},
                            {"postroom-dlt-original-partition", "2"},
                            {"postroom-dlt-original-offset", "99"},
                            {"postroom-dlt-group", "billing"},
                            {"postroom-dlt-attempts", "5"},
                            {"postroom-replay-count", "1"}}));
    EXPECT_EQ(d.convention, Convention::postroom);
    EXPECT_EQ(d.error_type, "ValueError");
    EXPECT_EQ(d.original_topic, "orders");
    EXPECT_EQ(d.original_partition, 2);
    EXPECT_EQ(d.original_offset, "99");
    EXPECT_EQ(d.group, "billing");
    EXPECT_EQ(d.attempts, 5);
    EXPECT_EQ(d.replay_count, 1);
    EXPECT_EQ(d.id(), "orders.dlq:1:7");
}

TEST(DeadLetterDecoding, SpringWritesPartitionAndOffsetAsBigEndianBinary) {
    auto d = decode(letter({{"kafka_dlt-exception-fqcn",
                             "org.springframework.kafka.listener.ListenerExecutionFailedException"},
                            {"kafka_dlt-exception-cause-fqcn", "java.lang.IllegalStateException"},
                            {"kafka_dlt-exception-message", "boom"},
                            {"kafka_dlt-original-topic", "payments"},
                            {"kafka_dlt-original-partition", be(3, 4)},
                            {"kafka_dlt-original-offset", be(123456789012, 8)},
                            {"kafka_dlt-original-timestamp", be(1700000000000, 8)},
                            {"kafka_dlt-original-consumer-group", "pay-group"}}));
    EXPECT_EQ(d.convention, Convention::spring);
    EXPECT_EQ(d.error_type, "java.lang.IllegalStateException") << "the cause, not the wrapper";
    EXPECT_EQ(d.original_partition, 3);
    EXPECT_EQ(d.original_offset, "123456789012");
    EXPECT_EQ(d.failed_at, "1700000000000");
    EXPECT_EQ(d.group, "pay-group");
}

TEST(DeadLetterDecoding, EveryOtherConvention) {
    auto retry = decode(letter({{"kafka_exception-fqcn", "java.io.IOException"},
                                {"kafka_original-topic", "a"},
                                {"kafka_original-offset", be(5, 8)},
                                {"retry_topic-attempts", be(3, 4)}}));
    EXPECT_EQ(retry.convention, Convention::spring_retry);
    EXPECT_EQ(retry.original_offset, "5");
    EXPECT_EQ(retry.attempts, 3);
    auto connect = decode(letter(
        {{"__connect.errors.topic", "b"},
         {"__connect.errors.partition", "4"},
         {"__connect.errors.offset", "10"},
         {"__connect.errors.connector.name", "jdbc-sink"},
         {"__connect.errors.task.id", "0"},
         {"__connect.errors.stage", "VALUE_CONVERTER"},
         {"__connect.errors.exception.class.name", "org.apache.kafka.connect.errors.DataException"},
         {"__connect.errors.exception.message", "Unknown magic byte!"}}));
    EXPECT_EQ(connect.convention, Convention::kafka_connect);
    EXPECT_EQ(connect.original_partition, 4);
    EXPECT_EQ(connect.group, "jdbc-sink task 0");
    EXPECT_EQ(connect.reason, "VALUE_CONVERTER");
    auto streams = decode(letter({{"__streams.errors.exception", "java.lang.RuntimeException"},
                                  {"__streams.errors.topic", "c"},
                                  {"__streams.errors.offset", "11"}}));
    EXPECT_EQ(streams.convention, Convention::kafka_streams);
    EXPECT_EQ(streams.original_topic, "c");
    auto watermill = decode(letter({{"reason_poisoned", "handler failed: timeout"},
                                    {"topic_poisoned", "d"},
                                    {"handler_poisoned", "h"}}));
    EXPECT_EQ(watermill.convention, Convention::watermill);
    EXPECT_EQ(watermill.error_message, "handler failed: timeout");
    EXPECT_EQ(watermill.group, "h");
    auto mt = decode(letter({{"MT-Fault-ExceptionType", "System.InvalidOperationException"},
                             {"MT-Fault-Message", "nope"},
                             {"MT-Fault-RetryCount", "2"},
                             {"MT-Source-Address", "rabbitmq://host/orders"}}));
    EXPECT_EQ(mt.convention, Convention::masstransit);
    EXPECT_EQ(mt.attempts, 2);
    EXPECT_EQ(mt.original_topic, "rabbitmq://host/orders");
    auto nsb = decode(letter({{"NServiceBus.ExceptionInfo.ExceptionType", "System.Exception"},
                              {"NServiceBus.ExceptionInfo.Message", "x"},
                              {"NServiceBus.FailedQ", "Sales"},
                              {"NServiceBus.ProcessingEndpoint", "Sales.Endpoint"}}));
    EXPECT_EQ(nsb.convention, Convention::nservicebus);
    EXPECT_EQ(nsb.original_topic, "Sales");
    auto plain = decode(letter({{"trace", "1"}}));
    EXPECT_EQ(plain.convention, Convention::unknown);
    EXPECT_FALSE(plain.fingerprint.empty());
}

TEST(DeadLetterDecoding, TheFailureHeadersOfEveryConventionAreKnownAndNoOthers) {
    for (std::string_view failure : {"postroom-dlt-reason",
                                     "postroom-dlt-value-truncated",
                                     "postroom-retry-due",
                                     "kafka_dlt-exception-fqcn",
                                     "kafka_dlt-original-offset",
                                     "kafka_exception-message",
                                     "kafka_original-topic",
                                     "retry_topic-attempts",
                                     "__connect.errors.topic",
                                     "__connect.errors.exception.message",
                                     "__streams.errors.exception",
                                     "reason_poisoned",
                                     "topic_poisoned",
                                     "handler_poisoned",
                                     "subscriber_poisoned",
                                     "MT-Fault-Message",
                                     "MT-Reason",
                                     "MT-Host-MachineName",
                                     "NServiceBus.ExceptionInfo.StackTrace",
                                     "NServiceBus.FailedQ",
                                     "NServiceBus.TimeOfFailure",
                                     "NServiceBus.Retries",
                                     "NServiceBus.ProcessingEndpoint"})
        EXPECT_TRUE(is_failure_header(failure)) << failure;
    for (std::string_view other :
         {"ce_id", "ce_type", "content-type", "traceparent", "postroom-replay-count",
          "postroom-replayed-from", "postroom-replay-id", "MT-Source-Address", "MessageId",
          "NServiceBus.MessageId", "kafka_correlationId", "_poisoned", "id"})
        EXPECT_FALSE(is_failure_header(other)) << other;
}

TEST(DeadLetterDecoding, ProvenanceAndTruncation) {
    auto d = decode(letter({{"postroom-dlt-reason", "too-large"},
                            {"postroom-dlt-value-truncated", "true"},
                            {"postroom-dlt-value-length", "2097152"},
                            {"postroom-replayed-from", "orders.dlq:0:7"},
                            {"postroom-replay-id", "1700000000000-0badcafe"}}));
    EXPECT_TRUE(d.value_truncated);
    EXPECT_EQ(d.value_length, 2097152);
    EXPECT_EQ(d.replayed_from, "orders.dlq:0:7");
    EXPECT_EQ(d.replay_id, "1700000000000-0badcafe");
    auto whole = decode(letter({{"postroom-dlt-reason", "too-large"}}));
    EXPECT_FALSE(whole.value_truncated);
    EXPECT_FALSE(whole.value_length);
}

TEST(DeadLetterFingerprint, VaryingDetailsGroupTogetherAndDifferentErrorsDoNot) {
    EXPECT_EQ(normalise_message("order 42 for 'alice' failed after 1.5s id=deadbeef42 "
                                "uuid 123e4567-e89b-12d3-a456-426614174000"),
              "order <n> for '<s>' failed after <n>s id=<hex> uuid <uuid>");
    EXPECT_EQ(top_frame("java.lang.X: y\n\tat com.acme.Pay.charge(Pay.java:42)\n\tat z(Z.java:1)"),
              "at com.acme.Pay.charge(Pay.java:)");
    EXPECT_EQ(top_frame("Traceback (most recent call last):\n  File \"a.py\", line 3, in main\n"
                        "  File \"b.py\", line 9, in handle\nValueError: x"),
              "File \"b.py\", line , in handle");
    EXPECT_EQ(fingerprint("E", "order 1 failed", "at a.b(C.java:1)"),
              fingerprint("E", "order 2 failed", "at a.b(C.java:7)"));
    EXPECT_NE(fingerprint("E", "order 1 failed", ""), fingerprint("F", "order 1 failed", ""));
    EXPECT_NE(fingerprint("E", "order 1 failed", "at a.b(C.java:1)"),
              fingerprint("E", "order 1 failed", "at a.c(C.java:1)"));
    EXPECT_EQ(fingerprint("E", "m", "").size(), 16u);
}

TEST(DeadLetterStats, GroupsCountFirstAndLastSeenTopicsAndGroups) {
    Stats stats;
    for (int i = 0; i < 5; ++i)
        stats.add(decode(letter({{"postroom-dlt-error-type", "ValueError"},
                                 {"postroom-dlt-error-message", "bad order " + std::to_string(i)},
                                 {"postroom-dlt-original-topic", i % 2 ? "a" : "b"},
                                 {"postroom-dlt-group", "g"}},
                                i, 100 + i)));
    stats.add(decode(letter({{"postroom-dlt-error-type", "KeyError"}}, 9, 50)));
    auto groups = stats.groups();
    ASSERT_EQ(groups.size(), 2u);
    EXPECT_EQ(stats.total(), 6);
    EXPECT_EQ(groups[0].count, 5);
    EXPECT_EQ(groups[0].message, "bad order <n>");
    EXPECT_EQ(groups[0].first_seen_ms, 100);
    EXPECT_EQ(groups[0].last_seen_ms, 104);
    EXPECT_EQ(groups[0].original_topics, (std::set<std::string>{"a", "b"}));
    EXPECT_EQ(groups[0].sample_id, "orders.dlq:1:4");
    EXPECT_EQ(groups[1].error_type, "KeyError");
}

TEST(DeadLetterFilter, EachFieldNarrows) {
    auto d = decode(letter({{"postroom-dlt-error-type", "ValueError"},
                            {"postroom-dlt-original-topic", "orders"},
                            {"tenant", "acme"}}));
    Filter f;
    EXPECT_TRUE(f.matches(d));
    f.error_type = "Value";
    f.original_topic = "orders";
    f.header_name = "tenant";
    f.header_value = "acme";
    f.key = "k";
    f.text = "v";
    f.since_ms = 1000;
    f.until_ms = 1001;
    EXPECT_TRUE(f.matches(d));
    for (auto change : std::vector<std::function<void(Filter&)>>{
             [](Filter& x) { x.error_type = "Key"; }, [](Filter& x) { x.original_topic = "x"; },
             [](Filter& x) { x.header_value = "other"; }, [](Filter& x) { x.key = "j"; },
             [](Filter& x) { x.text = "zzz"; }, [](Filter& x) { x.since_ms = 1001; },
             [](Filter& x) { x.until_ms = 1000; }, [](Filter& x) { x.ids = {"nope"}; },
             [](Filter& x) { x.fingerprint = "ffff"; }}) {
        Filter g = f;
        change(g);
        EXPECT_FALSE(g.matches(d));
    }
}

TEST(DeadLetterViews, DecodedFromViewsTheyAgreeWithDecodedLetters) {
    // One letter of each convention, with what is derived: binary and zero-padded numbers,
    // joined groups.
    std::vector<Message> letters{
        letter({{"postroom-dlt-error-type", "ValueError"},
                {"postroom-dlt-error-message", "bad order 42 for 'alice'"},
                {"postroom-dlt-error-stack", "Traceback\n  File \"a.py\", line 3, in f"},
                {"postroom-dlt-original-topic", "orders"},
                {"postroom-dlt-original-offset", "0099"},
                {"postroom-dlt-group", "billing"},
                {"postroom-dlt-last-failure", "2026-12-07T05:00:00.123Z"},
                {"postroom-replay-count", "2"},
                {"tenant", "acme"}},
               1, 500),
        letter({{"kafka_dlt-exception-fqcn", "ListenerExecutionFailedException"},
                {"kafka_dlt-exception-cause-fqcn", "java.lang.IllegalStateException"},
                {"kafka_dlt-original-topic", "payments"},
                {"kafka_dlt-original-partition", be(3, 4)},
                {"kafka_dlt-original-offset", be(1234567890123, 8)},
                {"kafka_dlt-original-timestamp", be(1700000000000, 8)}},
               2, 600),
        letter({{"kafka_exception-fqcn", "java.io.IOException"},
                {"kafka_original-topic", "a"},
                {"kafka_original-offset", "007"}},
               3, 700),
        letter({{"__connect.errors.topic", "b"},
                {"__connect.errors.task.id", "0"},
                {"__connect.errors.exception.class.name", "DataException"}},
               4, 800),
        letter({{"reason_poisoned", "timeout"},
                {"topic_poisoned", "d"},
                {"handler_poisoned", "h"},
                {"subscriber_poisoned", "s"}},
               5, 900),
        letter({{"MT-Fault-ExceptionType", "System.InvalidOperationException"},
                {"MT-Fault-Message", "nope 7"}},
               6, 1000),
        letter({{"NServiceBus.FailedQ", "Sales"}, {"NServiceBus.Retries", "4"}}, 7, 1100),
        letter({{"trace", "1"}, {"no-value", std::nullopt}}, 8, 1200),
    };
    MessageBatch batch(letters);
    ASSERT_EQ(batch.size(), letters.size());
    Stats from_letters, from_views;
    std::vector<Filter> filters(6);
    filters[1].error_type = "State";
    filters[2].original_topic = "orders";
    filters[3].header_name = "no-value";
    filters[4].fingerprint = decode(letters[0]).fingerprint.substr(0, 6);
    filters[5].ids = {"orders.dlq:1:3", "orders.dlq:1:8"};
    for (std::size_t i = 0; i < letters.size(); ++i) {
        SCOPED_TRACE(i);
        const auto d = decode(letters[i]);
        const auto& record = batch.views()[i];
        const auto facts = decode_facts(record.headers);
        EXPECT_EQ(facts.convention, d.convention);
        EXPECT_EQ(facts.error_type, d.error_type);
        EXPECT_EQ(facts.error_message, d.error_message);
        EXPECT_EQ(facts.error_stack, d.error_stack);
        EXPECT_EQ(facts.reason.view(), d.reason);
        EXPECT_EQ(facts.original_topic, d.original_topic);
        EXPECT_EQ(facts.original_partition, d.original_partition);
        EXPECT_EQ(facts.original_offset.view(), d.original_offset);
        EXPECT_EQ(facts.group.view(), d.group);
        EXPECT_EQ(facts.attempts, d.attempts);
        EXPECT_EQ(facts.failed_at.view(), d.failed_at);
        EXPECT_EQ(facts.replay_count, d.replay_count);
        std::array<char, 16> digits;
        const auto fp =
            fingerprint_into(digits, facts.error_type, facts.error_message, facts.error_stack);
        EXPECT_EQ(fp, d.fingerprint);
        const LetterView view{record, facts, fp};
        std::string id = "x";
        append_letter_id(id, record);
        EXPECT_EQ(id, "x" + d.id());
        for (std::size_t k = 0; k < filters.size(); ++k)
            EXPECT_EQ(filters[k].matches(view), filters[k].matches(d)) << "filter " << k;
        from_letters.add(d);
        from_views.add(view);
    }
    // What the derivations give, checked once against the values themselves.
    const auto facts = decode_facts(batch.views()[1].headers);
    EXPECT_EQ(facts.original_offset.view(), "1234567890123");
    EXPECT_EQ(facts.failed_at.view(), "1700000000000");
    EXPECT_EQ(decode_facts(batch.views()[0].headers).original_offset.view(), "0099");
    EXPECT_EQ(decode_facts(batch.views()[2].headers).original_offset.view(), "7");
    EXPECT_EQ(decode_facts(batch.views()[3].headers).group.view(), "task 0");
    EXPECT_EQ(decode_facts(batch.views()[4].headers).group.view(), "h / s");
    EXPECT_EQ(filters[5].matches(decode(letters[2])), true);

    const auto a = from_letters.groups(), b = from_views.groups();
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(from_views.total(), from_letters.total());
    for (std::size_t g = 0; g < a.size(); ++g) {
        EXPECT_EQ(b[g].fingerprint, a[g].fingerprint);
        EXPECT_EQ(b[g].message, a[g].message);
        EXPECT_EQ(b[g].top_frame, a[g].top_frame);
        EXPECT_EQ(b[g].count, a[g].count);
        EXPECT_EQ(b[g].original_topics, a[g].original_topics);
        EXPECT_EQ(b[g].groups, a[g].groups);
        EXPECT_EQ(b[g].sample_id, a[g].sample_id);
        EXPECT_EQ(b[g].last_seen_ms, a[g].last_seen_ms);
    }
}

// The ledger's codec (no broker): what a replay writes reads back the same, records of earlier
// versions still read, and runs no replay writes are ignored.
TEST(DeadLetterLedger, ARecordOfRunsReadsBackItsRunsDestinationsAndReplay) {
    detail::LedgerRecord record;
    record.shape = detail::LedgerRecord::Shape::runs;
    record.state = "replayed";
    record.at_ms = 1234;
    record.replay_id = "1234-00c0ffee";
    record.runs = {{"orders.dlq:0", 1, 2, "orders"}, {"orders.dlq:1", 4, 4, "orders"}};
    const auto json = detail::encode_ledger_record(record);
    EXPECT_NE(json.find(R"("to":"orders")"), std::string::npos) << "one destination, once";
    auto decoded = detail::decode_ledger_record(json);
    ASSERT_TRUE(decoded.has_value()) << json;
    EXPECT_EQ(decoded->shape, detail::LedgerRecord::Shape::runs);
    EXPECT_EQ(decoded->state, "replayed");
    EXPECT_EQ(decoded->at_ms, 1234);
    EXPECT_EQ(decoded->runs, record.runs);
    EXPECT_EQ(decoded->replay_id, "1234-00c0ffee");

    record.runs = {{"orders.dlq:0", 0, 0, "orders.dlq.parking"}, {"orders.dlq:0", 1, 3, "a b"}};
    decoded = detail::decode_ledger_record(detail::encode_ledger_record(record));
    ASSERT_TRUE(decoded.has_value());
    EXPECT_EQ(decoded->runs, record.runs) << "one destination per run";

    std::map<std::string, LedgerEntry> ledger;
    detail::add_ledger_record(ledger, detail::ledger_record_key("orders.dlq:0:0", 1234), *decoded);
    ASSERT_EQ(ledger.size(), 4u);
    EXPECT_EQ(ledger.at("orders.dlq:0:0").detail, "orders.dlq.parking");
    EXPECT_EQ(ledger.at("orders.dlq:0:3").detail, "a b");
    EXPECT_EQ(detail::ledger_record_key("orders.dlq:0:0", 1234), "replayed:orders.dlq:0:0@1234");
}

TEST(DeadLetterLedger, ALetterRecordAndAnOldListOfIdsStillDecode) {
    auto letter = detail::decode_ledger_record(
        detail::encode_ledger_entry({"resolved", 7, "fixed upstream"}));
    ASSERT_TRUE(letter.has_value());
    EXPECT_EQ(letter->shape, detail::LedgerRecord::Shape::letter);
    EXPECT_EQ(letter->state, "resolved");
    EXPECT_EQ(letter->at_ms, 7);
    EXPECT_EQ(letter->detail, "fixed upstream");

    auto old = detail::decode_ledger_record(
        R"({"state":"replayed","at":1,"ids":["orders.dlq:0:0","orders.dlq:0:3"],"to":["orders","other"]})");
    ASSERT_TRUE(old.has_value());
    EXPECT_EQ(old->shape, detail::LedgerRecord::Shape::ids);
    ASSERT_EQ(old->ids.size(), 2u);
    EXPECT_EQ(old->ids[1], (std::pair<std::string, std::string>{"orders.dlq:0:3", "other"}));
    std::map<std::string, LedgerEntry> ledger;
    detail::add_ledger_record(ledger, "replayed:orders.dlq:0:0", *old);
    EXPECT_EQ(ledger.size(), 2u);
    EXPECT_EQ(ledger.at("orders.dlq:0:0").detail, "orders");

    EXPECT_FALSE(detail::decode_ledger_record("not json").has_value());
    EXPECT_FALSE(detail::decode_ledger_record(R"([1,2])").has_value());
}

TEST(DeadLetterLedger, ARunNoReplayWritesIsIgnored) {
    auto decoded = detail::decode_ledger_record(
        R"({"state":"replayed","at":1,"ranges":[["orders.dlq:0",6,2],["orders.dlq:0",-1,3],)"
        R"(["orders.dlq:0",0,200000000],["orders.dlq:0",7,8]],"to":["a","b","c","d"]})");
    ASSERT_TRUE(decoded.has_value());
    ASSERT_EQ(decoded->runs.size(), 1u);
    EXPECT_EQ(decoded->runs[0], (detail::LedgerRun{"orders.dlq:0", 7, 8, "d"}));
    EXPECT_EQ(decoded->replay_id, "") << "records before replay ids had none";
}

TEST(MessageViews, ABatchOfMessagesKeepsThemAndDropsWhatIsNotWanted) {
    std::vector<Message> messages{letter({{"a", "1"}, {"b", std::nullopt}}, 1), letter({}, 2),
                                  letter({{"c", std::string(40, 'c')}}, 3)};
    messages[1].key.reset();
    messages[1].value.reset();
    messages[2].id = "1700000000000-0";
    MessageBatch batch(messages);
    MessageBatch moved(std::move(batch));  // the views stay valid
    ASSERT_EQ(moved.size(), 3u);
    for (std::size_t i = 0; i < messages.size(); ++i) {
        const auto back = to_message(moved.views()[i]);
        EXPECT_EQ(back.topic, messages[i].topic);
        EXPECT_EQ(back.offset, messages[i].offset);
        EXPECT_EQ(back.key, messages[i].key);
        EXPECT_EQ(back.value, messages[i].value);
        EXPECT_EQ(back.headers, messages[i].headers);
        EXPECT_EQ(back.timestamp_ms, messages[i].timestamp_ms);
        EXPECT_EQ(back.id, messages[i].id);
    }
    std::string id;
    append_letter_id(id, moved.views()[2]);
    EXPECT_EQ(id, "orders.dlq:1700000000000-0");
    moved.drop_if([](const MessageView& v) { return v.offset == 2; });
    ASSERT_EQ(moved.size(), 2u);
    EXPECT_EQ(moved.views()[1].offset, 3);
    EXPECT_EQ(moved.views()[1].headers[0].value->size(), 40u);
}

// ---------------------------------------------------------------- embedded broker

namespace {

struct EmbeddedDeadLetters : ::testing::Test {
    static inline std::atomic<int> counter{0};
    std::string name = "dlq-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    std::string url = "embedded://" + name;
    std::shared_ptr<embedded::Broker> broker = embedded::Broker::shared(name);

    void SetUp() override {
        for (const auto* t :
             {"orders", "orders.dlq", "orders.dlq.ledger", "orders.dlq.parking", "other"})
            broker->create_topic(t, 1);
    }
    void write_letters(int n, int replay_count = 0) {
        kafka::ProducerConfig c;
        c.broker_url = url;
        kafka::Producer p(c);
        std::vector<OutgoingMessage> batch;
        for (int i = 0; i < n; ++i)
            batch.push_back({"orders.dlq",
                             "k" + std::to_string(i),
                             "v" + std::to_string(i),
                             {{"postroom-dlt-error-type", i % 3 ? "ValueError" : "KeyError"},
                              {"postroom-dlt-error-message", "bad " + std::to_string(i)},
                              {"postroom-dlt-original-topic", "orders"},
                              {"postroom-replay-count", std::to_string(replay_count)},
                              {"ce_id", "ev-" + std::to_string(i)}},
                             std::nullopt});
        p.send_batch(std::move(batch))->raise_for_failures();
    }
    std::vector<Message> read(const std::string& topic, std::size_t n) {
        kafka::ConsumerConfig c;
        c.broker_url = url;
        c.group_id = "reader-" + std::to_string(++counter);
        kafka::Consumer consumer(c);
        consumer.subscribe({topic});
        std::vector<Message> out;
        auto until = std::chrono::steady_clock::now() + 15s;
        while (out.size() < n && std::chrono::steady_clock::now() < until)
            for (auto& m : consumer.poll_batch(n, 200ms)) out.push_back(std::move(m));
        consumer.close();
        return out;
    }
    DeadLetterQueue queue() { return DeadLetterQueue({url, "orders.dlq", 5s}); }
};

}  // namespace

TEST_F(EmbeddedDeadLetters, ListNewestFirstWithPagingAndStatsByGroup) {
    write_letters(9);
    auto q = queue();
    EXPECT_EQ(q.size(), 9);
    auto page = q.list({}, 4, 0);
    ASSERT_EQ(page.size(), 4u);
    EXPECT_EQ(page[0].record.offset, 8) << "newest first";
    auto next = q.list({}, 4, 4);
    EXPECT_EQ(next[0].record.offset, 4);
    auto oldest = q.list({}, 2, 0, false);
    EXPECT_EQ(oldest[0].record.offset, 0);
    Filter f;
    f.error_type = "KeyError";
    EXPECT_EQ(q.list(f, 100).size(), 3u);
    auto groups = q.stats({}).groups();
    ASSERT_EQ(groups.size(), 2u);
    EXPECT_EQ(groups[0].count, 6);
    auto shown = q.show("orders.dlq:0:5");
    ASSERT_TRUE(shown);
    EXPECT_EQ(shown->record.value, std::optional<std::string>("v5"));
    EXPECT_FALSE(q.show("orders.dlq:0:99"));
}

TEST_F(EmbeddedDeadLetters, ReplayKeepsKeyAndHeadersCountsReplaysAndResumesWithoutResending) {
    write_letters(40);
    auto q = queue();
    ReplayOptions dry;
    dry.dry_run = true;
    auto plan = q.replay(dry);
    EXPECT_EQ(plan.selected, 40);
    EXPECT_EQ(plan.per_target.at("orders"), 40);
    EXPECT_EQ(plan.per_fingerprint.size(), 2u) << "two error types; the numbers do not count";
    EXPECT_TRUE(q.ledger().empty()) << "a dry run sends and records nothing";

    ReplayOptions o;
    o.batch_size = 2;
    int calls = 0;
    // Cancel after 2 acknowledged batches: the batches already in flight (at most 4) finish
    // and are recorded; nothing more is sent.
    o.progress = [&](int64_t, int64_t) { return ++calls < 2; };
    auto first = q.replay(o);
    EXPECT_TRUE(first.cancelled);
    EXPECT_GE(first.replayed, 4);
    EXPECT_LE(first.replayed, 12);
    EXPECT_EQ(static_cast<int64_t>(q.ledger().size()), first.replayed);
    o.progress = {};
    auto rest = q.replay(o);
    EXPECT_EQ(rest.skipped, first.replayed) << "already replayed letters are not sent again";
    EXPECT_EQ(rest.replayed, 40 - first.replayed);
    auto replayed = read("orders", 41);
    ASSERT_EQ(replayed.size(), 40u) << "each letter exactly once";
    EXPECT_EQ(replayed[0].key, std::optional<std::string>("k0"));
    EXPECT_TRUE(find_header(replayed[0].headers, "ce_id"));
    EXPECT_FALSE(find_header(replayed[0].headers, "postroom-dlt-error-type"));
    EXPECT_EQ(*find_header(replayed[0].headers, "postroom-replay-count")->value, "1");
    EXPECT_EQ(q.list({}, 100).size(), 0u) << "replayed letters leave the list";
    EXPECT_EQ(q.list({}, 100, 0, true, true).size(), 40u);
}

TEST_F(EmbeddedDeadLetters, TheLoopGuardParksLettersReplayedTooOften) {
    write_letters(2, 3);
    auto q = queue();
    ReplayOptions o;
    o.max_replays = 3;
    auto r = q.replay(o);
    EXPECT_EQ(r.parked, 2);
    EXPECT_EQ(r.replayed, 0);
    auto parked = read("orders.dlq.parking", 2);
    ASSERT_EQ(parked.size(), 2u);
    EXPECT_TRUE(find_header(parked[0].headers, "postroom-parked-reason"));
}

TEST_F(EmbeddedDeadLetters, TheLedgerRecordsWhereEachLetterWent) {
    write_letters(3, 3);  // these go to the parking lot
    write_letters(4);     // these back to "orders"
    auto q = queue();
    ReplayOptions o;
    o.max_replays = 3;
    auto r = q.replay(o);  // one batch, two destinations
    EXPECT_EQ(r.parked, 3);
    EXPECT_EQ(r.replayed, 4);
    auto ledger = q.ledger();
    ASSERT_EQ(ledger.size(), 7u);
    for (int offset = 0; offset < 7; ++offset) {
        const auto& e = ledger.at("orders.dlq:0:" + std::to_string(offset));
        EXPECT_EQ(e.state, "replayed");
        EXPECT_EQ(e.detail, offset < 3 ? "orders.dlq.parking" : "orders") << offset;
    }
    // A replay to one destination: every letter of the record went there.
    o.again = true;
    o.max_replays = 10;
    o.to = "other";
    EXPECT_EQ(q.replay(o).replayed, 7);
    for (const auto& [id, e] : q.ledger()) EXPECT_EQ(e.detail, "other") << id;
    // Both replays began with the same letter, and their records have keys of their own:
    // compaction keeps both (the later wins when read in order).
    auto records = read("orders.dlq.ledger", 2);
    ASSERT_EQ(records.size(), 2u);
    EXPECT_NE(records[0].key, records[1].key);
    EXPECT_EQ(records[0].key->rfind("replayed:orders.dlq:0:0@", 0), 0u) << *records[0].key;
}

TEST_F(EmbeddedDeadLetters, TheLedgerRecordsRunsOfOffsetsAndStillReadsListsOfIds) {
    write_letters(7);  // KeyError at offsets 0, 3 and 6, ValueError at the others
    auto q = queue();
    ReplayOptions o;
    o.filter.error_type = "ValueError";
    EXPECT_EQ(q.replay(o).replayed, 4);
    // One record for the flight: two runs of consecutive offsets, one destination.
    kafka::AdminConfig admin_config;
    admin_config.broker_url = url;
    EXPECT_EQ(kafka::Admin(admin_config).watermarks({"orders.dlq.ledger", 0}).high, 1);
    auto records = read("orders.dlq.ledger", 1);
    ASSERT_EQ(records.size(), 1u);
    const auto& json = records[0].value.value();
    EXPECT_NE(json.find(R"("ranges":[["orders.dlq:0",1,2],["orders.dlq:0",4,5]],"to":"orders")"),
              std::string::npos)
        << json;
    auto ledger = q.ledger();
    EXPECT_EQ(ledger.size(), 4u);
    for (int offset : {1, 2, 4, 5})
        EXPECT_TRUE(ledger.count("orders.dlq:0:" + std::to_string(offset)));

    // A record as earlier versions wrote it (every id listed) still settles its letters, and
    // a run no replay writes is ignored.
    kafka::ProducerConfig c;
    c.broker_url = url;
    kafka::Producer p(c);
    p.send_batch(
         {{"orders.dlq.ledger",
           "replayed:orders.dlq:0:0",
           R"({"state":"replayed","at":1,"ids":["orders.dlq:0:0","orders.dlq:0:3"],"to":["orders","other"]})",
           {},
           std::nullopt},
          {"orders.dlq.ledger",
           "replayed:bogus",
           R"({"state":"replayed","at":1,"ranges":[["orders.dlq:0",6,2]],"to":"orders"})",
           {},
           std::nullopt}})
        ->raise_for_failures();
    ledger = q.ledger();
    EXPECT_EQ(ledger.size(), 6u);
    EXPECT_EQ(ledger.at("orders.dlq:0:3").detail, "other");
    EXPECT_FALSE(ledger.count("orders.dlq:0:6"));
    auto rest = q.replay({});
    EXPECT_EQ(rest.skipped, 6);
    EXPECT_EQ(rest.replayed, 1) << "only offset 6 was left";
}

TEST_F(EmbeddedDeadLetters, ResolvedLettersStopShowingAndAnUnknownTopicSaysSo) {
    write_letters(3);
    auto q = queue();
    EXPECT_EQ(q.resolve({"orders.dlq:0:1"}, "fixed upstream"), 1u);
    EXPECT_EQ(q.list({}, 10).size(), 2u);
    EXPECT_EQ(q.ledger().at("orders.dlq:0:1").detail, "fixed upstream");
    DeadLetterQueue missing({url, "nope.dlq", 2s});
    EXPECT_THROW(missing.size(), UsageError);
    EXPECT_THROW(q.truncate(0, 1), UsageError) << "the embedded broker cannot delete records";
}
