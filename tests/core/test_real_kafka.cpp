// Against the real Kafka broker started by scripts/services.sh (POSTROOM_KAFKA_URL).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>

#include "postroom/binding.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/admin.hpp"
#include "postroom/kafka/consumer.hpp"
#include "postroom/kafka/producer.hpp"

using namespace postroom;
using namespace postroom::kafka;
using namespace postroom::cloudevents;
using namespace std::chrono_literals;

namespace {

std::string kafka_url() {
    const char* url = std::getenv("POSTROOM_KAFKA_URL");
    if (!url || !*url) {
        ADD_FAILURE() << "POSTROOM_KAFKA_URL is not set; start the broker with "
                         "scripts/services.sh start kafka and export its URL";
        return "kafka://127.0.0.1:1";
    }
    return url;
}

std::string unique(const std::string& prefix) {
    static std::mt19937_64 rng(std::random_device{}());
    return prefix + "-" + std::to_string(rng() % 1000000000);
}

struct RealKafka : ::testing::Test {
    std::string url = kafka_url();
    std::string topic = unique("gtest");

    void SetUp() override {
        AdminConfig config;
        config.broker_url = url;
        Admin admin(config);
        admin.create_topic(topic, 3);
    }
    void TearDown() override {
        AdminConfig config;
        config.broker_url = url;
        Admin admin(config);
        admin.delete_topic(topic);
    }
    ConsumerConfig consumer_config(const std::string& group) {
        ConsumerConfig c;
        c.broker_url = url;
        c.group_id = group;
        c.session_timeout = 10s;
        return c;
    }
    std::vector<Message> consume(Consumer& c, std::size_t n, std::chrono::seconds limit = 60s) {
        std::vector<Message> got;
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (got.size() < n && std::chrono::steady_clock::now() < deadline)
            for (auto& m : c.poll_batch(n - got.size(), 200ms)) got.push_back(std::move(m));
        return got;
    }
};

}  // namespace

TEST_F(RealKafka, IdempotentProducerIsReallyEnabled) {
    ProducerConfig config;
    config.broker_url = url;
    std::mutex mutex;
    std::string features;
    config.properties["debug"] = "broker,feature";
    config.log_handler = [&](int, std::string_view, std::string_view msg) {
        std::lock_guard lock(mutex);
        if (msg.find("Enabling feature IdempotentProducer") != std::string_view::npos ||
            msg.find("Updated enabled protocol features to") != std::string_view::npos)
            features += std::string(msg) + "\n";
    };
    Producer producer(config);
    producer.send({topic, std::string("k"), std::string("v"), {}, std::nullopt});
    EXPECT_TRUE(producer.idempotence_enabled()) << "no producer id was acquired";
    std::lock_guard lock(mutex);
    EXPECT_NE(features.find("IdempotentProducer"), std::string::npos) << features;
}

TEST_F(RealKafka, ProduceAndConsumeAcrossPartitionsWithPerKeyOrder) {
    ProducerConfig pc;
    pc.broker_url = url;
    Producer producer(pc);
    std::vector<OutgoingMessage> batch;
    const int n = 3000, keys = 11;
    for (int i = 0; i < n; ++i)
        batch.push_back({topic,
                         "k" + std::to_string(i % keys),
                         std::to_string(i),
                         {{"i", std::to_string(i)}},
                         std::nullopt});
    auto result = producer.send_batch(std::move(batch));
    ASSERT_EQ(result->failed(), 0u);
    std::set<int32_t> partitions;
    for (const auto& r : result->reports()) partitions.insert(r.partition);
    EXPECT_EQ(partitions.size(), 3u);

    Consumer consumer(consumer_config(unique("g")));
    consumer.subscribe({topic});
    auto got = consume(consumer, n);
    ASSERT_EQ(got.size(), static_cast<std::size_t>(n));
    std::map<std::string, int> last;
    std::map<std::string, int32_t> partition_of;
    for (const auto& m : got) {
        int v = std::stoi(*m.value);
        auto [it, fresh] = last.emplace(*m.key, v);
        if (!fresh) {
            EXPECT_GT(v, it->second) << "per-key order violated for " << *m.key;
            it->second = v;
        }
        auto [p, pfresh] = partition_of.emplace(*m.key, m.partition);
        EXPECT_EQ(p->second, m.partition);
    }
    EXPECT_TRUE(consumer.poll(1s) == std::nullopt) << "no duplicates";
}

TEST_F(RealKafka, CommitAndResume) {
    ProducerConfig pc;
    pc.broker_url = url;
    Producer producer(pc);
    std::vector<OutgoingMessage> batch;
    for (int i = 0; i < 100; ++i) batch.push_back({topic, std::nullopt, std::to_string(i), {}, 0});
    producer.send_batch(std::move(batch))->raise_for_failures();
    auto group = unique("g-resume");
    {
        Consumer consumer(consumer_config(group));
        consumer.subscribe({topic});
        auto got = consume(consumer, 100);
        ASSERT_EQ(got.size(), 100u);
        for (int i = 0; i < 60; ++i) consumer.mark_done(got[static_cast<std::size_t>(i)]);
        auto committed = consumer.commit();
        ASSERT_EQ(committed.size(), 1u);
        EXPECT_EQ(committed[0].offset, 60);
    }
    Consumer again(consumer_config(group));
    again.subscribe({topic});
    auto rest = consume(again, 40);
    ASSERT_EQ(rest.size(), 40u);
    EXPECT_EQ(rest.front().offset, 60);
    EXPECT_EQ(rest.back().offset, 99);
}

TEST_F(RealKafka, EventsRoundTripInBothModes) {
    ProducerConfig pc;
    pc.broker_url = url;
    Producer producer(pc);
    Event e("real-1", "/gtest/real", "roundtrip");
    e.datacontenttype = "application/json";
    e.data = R"({"x":1})";
    e.time = now_rfc3339();
    producer.send(to_message(e, topic, std::string("a")));
    producer.send(to_message(e, topic, std::string("a"), EventMode::structured));
    Consumer consumer(consumer_config(unique("g-ev")));
    consumer.subscribe({topic});
    auto got = consume(consumer, 2);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(to_event(got[0]), e);
    EXPECT_EQ(to_event(got[1]), e);
}

TEST(RealKafkaErrors, UnreachableBrokerTimesOutWithAClearError) {
    AdminConfig config;
    config.broker_url = "kafka://127.0.0.1:1";
    config.timeout = 1500ms;
    Admin admin(config);
    try {
        admin.ping();
        FAIL();
    } catch (const TransportError& e) {  // refused (or timed out: a TransportError too)
        std::string what = e.what();
        EXPECT_NE(what.find("kafka://127.0.0.1:1"), std::string::npos) << what;
        EXPECT_NE(what.find("running"), std::string::npos) << what;
        EXPECT_EQ(e.retriable(), Retriable::yes);
    }
}

// ---------------------------------------------------------------- transport contract

#include "transport_contract.hpp"

namespace {

struct KafkaBackend {
    std::string url() const { return kafka_url(); }
    void create_topic(const std::string& topic) {
        AdminConfig config;
        config.broker_url = url();
        Admin admin(config);
        admin.create_topic(topic, 1);
    }
    void delete_topic(const std::string& topic) {
        AdminConfig config;
        config.broker_url = url();
        Admin admin(config);
        try {
            admin.delete_topic(topic);
        } catch (const postroom::Error&) {
            // never created (the .dlq of most cases)
        }
    }
    postroom::transport::Properties consumer_properties() const {
        return {{"session.timeout.ms", "6000"}};
    }
};

}  // namespace

INSTANTIATE_TYPED_TEST_SUITE_P(Kafka, TransportContract, ::testing::Types<KafkaBackend>);
