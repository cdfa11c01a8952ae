// Produce and consume through the embedded broker (librdkafka's mock cluster), including
// injected broker errors. No external service needed.
#include <gtest/gtest.h>

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <map>
#include <thread>

#include "postroom/binding.hpp"
#include "postroom/embedded/broker.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/admin.hpp"
#include "postroom/kafka/consumer.hpp"
#include "postroom/kafka/producer.hpp"

using namespace postroom;
using namespace postroom::kafka;
using namespace postroom::cloudevents;
using namespace std::chrono_literals;

namespace {

std::string unique_url() {
    static std::atomic<int> n{0};
    return "embedded://gtest-" + std::to_string(++n);
}

struct EmbeddedKafka : ::testing::Test {
    std::string url = unique_url();
    std::shared_ptr<embedded::Broker> broker = embedded::Broker::shared(url.substr(11));

    ProducerConfig producer_config() {
        ProducerConfig c;
        c.broker_url = url;
        c.linger = 1ms;
        return c;
    }
    ConsumerConfig consumer_config(const std::string& group) {
        ConsumerConfig c;
        c.broker_url = url;
        c.group_id = group;
        c.session_timeout = 6000ms;
        return c;
    }
    std::vector<OutgoingMessage> keyed_messages(const std::string& topic, int n, int keys) {
        std::vector<OutgoingMessage> out;
        for (int i = 0; i < n; ++i) {
            OutgoingMessage m;
            m.topic = topic;
            m.key = "key-" + std::to_string(i % keys);
            m.value = std::to_string(i);
            m.headers.push_back({"seq", std::to_string(i)});
            out.push_back(std::move(m));
        }
        return out;
    }
    // Polls until `n` messages arrived or the deadline passes.
    std::vector<Message> consume(Consumer& c, std::size_t n, std::chrono::seconds limit = 30s) {
        std::vector<Message> got;
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
            auto batch = c.poll_batch(n - got.size(), 200ms);
            for (auto& m : batch) got.push_back(std::move(m));
        }
        return got;
    }
};

}  // namespace

TEST_F(EmbeddedKafka, ProduceAndConsumeAcrossPartitionsKeepsPerKeyOrder) {
    broker->create_topic("orders", 3);
    Producer producer(producer_config());
    auto batch = producer.send_batch(keyed_messages("orders", 300, 7));
    ASSERT_EQ(batch->failed(), 0u);
    std::map<std::string, int32_t> partition_of_key;
    for (std::size_t i = 0; i < batch->size(); ++i) {
        const auto& r = batch->reports()[i];
        EXPECT_TRUE(r.ok());
        EXPECT_GE(r.offset, 0);
        EXPECT_EQ(r.persistence, Persistence::persisted);
        auto [it, fresh] = partition_of_key.emplace(*batch->messages()[i].key, r.partition);
        EXPECT_EQ(it->second, r.partition) << "a key must always map to one partition";
    }
    std::set<int32_t> used;
    for (auto& [k, p] : partition_of_key) used.insert(p);
    EXPECT_GT(used.size(), 1u) << "7 keys should spread over more than one of 3 partitions";

    Consumer consumer(consumer_config("g1"));
    consumer.subscribe({"orders"});
    auto got = consume(consumer, 300);
    ASSERT_EQ(got.size(), 300u);
    std::map<std::string, int> last_seq;
    for (auto& m : got) {
        int seq = std::stoi(*m.value);
        EXPECT_EQ(find_header(m.headers, "seq")->value, *m.value);
        auto [it, fresh] = last_seq.emplace(*m.key, seq);
        if (!fresh) {
            EXPECT_GT(seq, it->second) << "order violated for " << *m.key;
            it->second = seq;
        }
    }
}

TEST_F(EmbeddedKafka, ViewsAreProducedAsCopiesAndConsumedIntoOneBatch) {
    broker->create_topic("views", 1);
    Producer producer(producer_config());
    std::shared_ptr<BatchDelivery> delivery;
    {
        // Everything the views point into is gone once produce_batch returns.
        std::vector<std::string> texts{"key-0", std::string("bin\0ary\xff", 8), "trace", "t-1",
                                       "empty-value"};
        std::vector<HeaderView> headers{{texts[2], texts[3]}, {texts[4], std::nullopt}};
        std::vector<OutgoingView> views{
            {"views", texts[0], texts[1], headers, std::nullopt},
            {"views", std::nullopt, std::nullopt, {}, 0},  // no key, a null value
        };
        delivery = producer.produce_batch(std::span<const OutgoingView>(views));
        for (auto& t : texts) t.assign(t.size(), '#');
    }
    ASSERT_TRUE(producer.wait(*delivery, 10s));
    delivery->raise_for_failures();
    EXPECT_TRUE(delivery->messages().empty()) << "a batch of views keeps no messages";

    Consumer consumer(consumer_config("views-reader"));
    consumer.assign({{"views", 0, 0}});
    std::vector<MessageBatch> batches;
    std::vector<const MessageView*> got;
    const auto until = std::chrono::steady_clock::now() + 15s;
    while (got.size() < 2 && std::chrono::steady_clock::now() < until) {
        batches.push_back(consumer.poll_views(10, 200ms));
        for (const auto& v : batches.back().views()) got.push_back(&v);  // moves keep views
    }
    consumer.close();  // the batches hold copies: they outlive the client
    ASSERT_EQ(got.size(), 2u);
    const auto& a = *got[0];
    EXPECT_EQ(a.topic, "views");
    EXPECT_EQ(a.offset, 0);
    EXPECT_EQ(a.key, std::optional<std::string_view>("key-0"));
    EXPECT_EQ(a.value, std::optional<std::string_view>(std::string_view("bin\0ary\xff", 8)));
    ASSERT_EQ(a.headers.size(), 2u);
    EXPECT_EQ(a.headers[0].name, "trace");
    EXPECT_EQ(a.headers[0].value, std::optional<std::string_view>("t-1"));
    EXPECT_EQ(a.headers[1].value, std::nullopt);
    EXPECT_EQ(a.find_header("empty-value"), &a.headers[1]);
    EXPECT_GT(a.timestamp_ms, 0);
    const auto& b = *got[1];
    EXPECT_EQ(b.key, std::nullopt);
    EXPECT_EQ(b.value, std::nullopt);
    EXPECT_TRUE(b.headers.empty());
    const auto copy = to_message(a);
    EXPECT_EQ(copy.value, std::optional<std::string>(std::string("bin\0ary\xff", 8)));
    EXPECT_EQ(copy.headers, (Headers{{"trace", "t-1"}, {"empty-value", std::nullopt}}));
}

TEST_F(EmbeddedKafka, PollViewsReturnsWithTheFirstRecordsInsteadOfWaitingForAFullBatch) {
    broker->create_topic("views-first", 1);
    Producer producer(producer_config());
    producer.send_batch(keyed_messages("views-first", 3, 1))->raise_for_failures();
    Consumer consumer(consumer_config("views-first-reader"));
    consumer.assign({{"views-first", 0, 0}});
    // A batch of up to 1,000 with a 60 s timeout: three records are all there is, so a call
    // that waited for a full batch would take the whole minute.
    const auto started = std::chrono::steady_clock::now();
    std::size_t got = 0;
    while (got < 3 && std::chrono::steady_clock::now() - started < 50s) {
        auto batch = consumer.poll_views(1000, 60s);
        EXPECT_FALSE(batch.empty()) << "a call returned without records before its timeout";
        got += batch.size();
    }
    EXPECT_EQ(got, 3u);
    EXPECT_LT(std::chrono::steady_clock::now() - started, 30s);
    // And never more than asked for.
    consumer.assign({{"views-first", 0, 0}});
    std::size_t second = 0;
    while (second < 3) {
        auto batch = consumer.poll_views(2, 10s);
        ASSERT_FALSE(batch.empty());
        EXPECT_LE(batch.size(), 2u);
        second += batch.size();
    }
    EXPECT_EQ(second, 3u);
}

TEST_F(EmbeddedKafka, EventsTravelInBinaryMode) {
    broker->create_topic("events", 1);
    Producer producer(producer_config());
    Event e("e-1", "/gtest", "test.happened");
    e.datacontenttype = "application/json";
    e.data = R"({"ok":true})";
    producer.send(to_message(e, "events", std::string("k")));
    Consumer consumer(consumer_config("g-events"));
    consumer.subscribe({"events"});
    auto got = consume(consumer, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(to_event(got[0]), e);
}

TEST_F(EmbeddedKafka, CommitCoversOnlyTheDonePrefix) {
    broker->create_topic("prefix", 1);
    Producer producer(producer_config());
    producer.send_batch(keyed_messages("prefix", 5, 1))->raise_for_failures();
    {
        Consumer consumer(consumer_config("g-prefix"));
        consumer.subscribe({"prefix"});
        auto got = consume(consumer, 5);
        ASSERT_EQ(got.size(), 5u);
        consumer.mark_done(got[0]);
        consumer.mark_done(got[2]);  // 1 is not done: the commit must stop at 1
        auto committed = consumer.commit();
        ASSERT_EQ(committed.size(), 1u);
        EXPECT_EQ(committed[0].offset, 1);
        EXPECT_EQ(consumer.outstanding(), 3u);
        EXPECT_TRUE(consumer.commit().empty()) << "nothing new is done";
        consumer.mark_done(got[1]);
        committed = consumer.commit();
        ASSERT_EQ(committed.size(), 1u);
        EXPECT_EQ(committed[0].offset, 3);
        auto on_broker = consumer.committed({{"prefix", 0}}, 5s);
        EXPECT_EQ(on_broker.at(0).offset, 3);
        // close() commits what is done and no more: 3 and 4 stay undone.
    }
    Consumer again(consumer_config("g-prefix"));
    again.subscribe({"prefix"});
    auto rest = consume(again, 2);
    ASSERT_EQ(rest.size(), 2u);
    EXPECT_EQ(rest[0].offset, 3) << "resumes at the first message not marked done";
    EXPECT_EQ(rest[1].offset, 4);
}

TEST_F(EmbeddedKafka, RebalanceCallbacksSeeAssignmentAndRevocation) {
    broker->create_topic("rebal", 2);
    std::vector<TopicPartition> assigned, revoked;
    {
        Consumer consumer(consumer_config("g-rebal"));
        RebalanceListener listener;
        listener.on_assigned = [&](const auto& tps) {
            assigned.insert(assigned.end(), tps.begin(), tps.end());
        };
        listener.on_revoked = [&](const auto& tps) {
            revoked.insert(revoked.end(), tps.begin(), tps.end());
        };
        consumer.subscribe({"rebal"}, listener);
        auto deadline = std::chrono::steady_clock::now() + 20s;
        while (assigned.size() < 2 && std::chrono::steady_clock::now() < deadline)
            consumer.poll(100ms);
        ASSERT_EQ(assigned.size(), 2u);
        EXPECT_EQ(consumer.assignment().size(), 2u);
    }
    EXPECT_EQ(revoked.size(), 2u) << "close() revokes what was assigned";
}

TEST_F(EmbeddedKafka, ExceptionInRebalanceCallbackIsRethrownFromPoll) {
    broker->create_topic("rebal-throw", 1);
    Consumer consumer(consumer_config("g-throw"));
    RebalanceListener listener;
    listener.on_assigned = [](const auto&) { throw std::runtime_error("callback failed"); };
    consumer.subscribe({"rebal-throw"}, listener);
    bool thrown = false;
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!thrown && std::chrono::steady_clock::now() < deadline) {
        try {
            consumer.poll(100ms);
        } catch (const std::runtime_error& e) {
            EXPECT_STREQ(e.what(), "callback failed");
            thrown = true;
        }
    }
    EXPECT_TRUE(thrown);
}

TEST_F(EmbeddedKafka, SeekRereadsFromAnOffset) {
    broker->create_topic("seek", 1);
    Producer producer(producer_config());
    producer.send_batch(keyed_messages("seek", 10, 1))->raise_for_failures();
    Consumer consumer(consumer_config("g-seek"));
    consumer.assign({{"seek", 0, Consumer::offset_beginning}});
    auto first = consume(consumer, 10);
    ASSERT_EQ(first.size(), 10u);
    consumer.seek({"seek", 0}, 7, 5s);
    auto again = consume(consumer, 3);
    ASSERT_EQ(again.size(), 3u);
    EXPECT_EQ(again[0].offset, 7);
}

TEST_F(EmbeddedKafka, RetriableBrokerErrorsRecover) {
    broker->create_topic("flaky", 1);
    // The next three produce requests fail with retriable errors; librdkafka retries and the
    // idempotent producer keeps order without duplicates.
    broker->push_request_errors(0 /* Produce */, {RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                                  RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                                  RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS});
    Producer producer(producer_config());
    auto batch = producer.send_batch(keyed_messages("flaky", 20, 1));
    EXPECT_EQ(batch->failed(), 0u);
    Consumer consumer(consumer_config("g-flaky"));
    consumer.subscribe({"flaky"});
    auto got = consume(consumer, 20);
    ASSERT_EQ(got.size(), 20u);
    for (int i = 0; i < 20; ++i)
        EXPECT_EQ(*got[static_cast<std::size_t>(i)].value, std::to_string(i));
    EXPECT_TRUE(consumer.poll(500ms) == std::nullopt) << "no duplicates after retries";
}

TEST_F(EmbeddedKafka, NonRetriableBrokerErrorSurfacesAsTheRightError) {
    broker->create_topic("denied", 1);
    broker->push_request_errors(0, {RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED});
    Producer producer(producer_config());
    OutgoingMessage m{"denied", std::string("k"), std::string("v"), {}, std::nullopt};
    EXPECT_THROW(producer.send(m), ConfigurationError);
}

TEST_F(EmbeddedKafka, FatalIdempotenceErrorSurfacesAsFatalClientError) {
    broker->create_topic("fatal", 1);
    Producer producer(producer_config());
    producer.send({"fatal", std::string("k"), std::string("first"), {}, std::nullopt});
    broker->push_request_errors(0, {RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER});
    try {
        producer.send({"fatal", std::string("k"), std::string("second"), {}, std::nullopt});
        FAIL() << "expected a fatal error";
    } catch (const FatalClientError& e) {
        EXPECT_EQ(e.retriable(), Retriable::no);
    }
    EXPECT_THROW(producer.send({"fatal", std::string("k"), std::string("third"), {}, std::nullopt}),
                 FatalClientError)
        << "a fatal client stays unusable";
}

TEST_F(EmbeddedKafka, BrokerDownTimesOutThenRecovers) {
    broker->create_topic("down", 1);
    auto config = producer_config();
    config.delivery_timeout = 1500ms;
    config.properties["reconnect.backoff.max.ms"] = "200";
    Producer producer(config);
    producer.send({"down", std::string("k"), std::string("before"), {}, std::nullopt});
    broker->set_broker_down(1);
    try {
        producer.send({"down", std::string("k"), std::string("lost?"), {}, std::nullopt});
        FAIL() << "expected a timeout";
    } catch (const TimeoutError& e) {
        EXPECT_EQ(e.retriable(), Retriable::yes);
    }
    broker->set_broker_up(1);
    bool delivered = false;
    for (int attempt = 0; attempt < 10 && !delivered; ++attempt) {
        try {
            producer.send({"down", std::string("k"), std::string("after"), {}, std::nullopt}, 20s);
            delivered = true;
        } catch (const TimeoutError&) {
            // Still reconnecting: a timed-out message is retriable.
        }
    }
    EXPECT_TRUE(delivered) << "the producer recovers once the broker is back";
}

TEST_F(EmbeddedKafka, UnknownTopicIsAUsageError) {
    auto config = producer_config();
    config.properties["topic.metadata.propagation.max.ms"] = "500";
    Producer producer(config);
    EXPECT_THROW(
        producer.send({"does-not-exist", std::nullopt, std::string("v"), {}, std::nullopt}),
        UsageError);
}

TEST_F(EmbeddedKafka, AdminListsAndDescribesTopics) {
    AdminConfig config;
    config.broker_url = url;
    Admin admin(config);
    admin.create_topic("alpha", 2);
    admin.create_topic("alpha", 2, 1, {}, /*exist_ok=*/true);
    auto topics = admin.list_topics();
    ASSERT_EQ(topics.size(), 1u);
    EXPECT_EQ(topics[0].name, "alpha");
    EXPECT_EQ(topics[0].partitions, 2);
    EXPECT_FALSE(admin.describe_topic("beta").has_value());
    EXPECT_THROW(admin.delete_topic("alpha"), UsageError);
    EXPECT_THROW(admin.create_topic("bad name!", 1), UsageError);
}

TEST_F(EmbeddedKafka, CloseReportsWhatCouldNotBeDelivered) {
    broker->create_topic("closing", 1);
    auto config = producer_config();
    config.close_timeout = 300ms;
    Producer producer(config);
    producer.send({"closing", std::nullopt, std::string("warm-up"), {}, std::nullopt});
    broker->set_broker_down(1);
    std::atomic<int> failed{0};
    for (int i = 0; i < 5; ++i)
        producer.produce({"closing", std::nullopt, std::string("x"), {}, std::nullopt},
                         [&](const DeliveryReport& r) { failed += r.ok() ? 0 : 1; });
    producer.close();
    EXPECT_EQ(failed.load(), 5) << "every undelivered message gets a failure report";
    broker->set_broker_up(1);
    EXPECT_THROW(producer.send({"closing", std::nullopt, std::string("x"), {}, std::nullopt}),
                 UsageError);
}
