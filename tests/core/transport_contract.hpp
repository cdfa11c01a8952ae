#pragma once
// One contract for every transport (Kafka, the embedded broker, Redis Streams): produce,
// consume, commit, redeliver, pause, and the consumer runtime's dead letters, run against
// each through transport::open_consumer / open_producer and the broker URL alone.
//
// A Backend provides: std::string url(); void create_topic(const std::string&);
// void delete_topic(const std::string&) (no error when missing);
// transport::Properties consumer_properties() (how fast undone work moves to another member).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "postroom/binding.hpp"
#include "postroom/event.hpp"
#include "postroom/runtime/dead_letter.hpp"
#include "postroom/runtime/processor.hpp"
#include "postroom/transport.hpp"

template <typename Backend>
struct TransportContract : ::testing::Test {
    Backend backend;
    static inline std::atomic<int> counter{0};
    std::string topic =
        "contract-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + "-" +
        std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 100000);

    void SetUp() override { backend.create_topic(topic); }
    void TearDown() override {
        backend.delete_topic(topic);
        backend.delete_topic(topic + ".dlq");
    }

    std::unique_ptr<postroom::transport::Producer> producer() {
        postroom::transport::ProducerOptions o;
        o.broker_url = backend.url();
        return postroom::transport::open_producer(o);
    }
    std::unique_ptr<postroom::transport::Consumer> consumer(const std::string& group) {
        postroom::transport::ConsumerOptions o;
        o.broker_url = backend.url();
        o.group_id = group;
        o.properties = backend.consumer_properties();
        auto c = postroom::transport::open_consumer(o);
        c->subscribe({topic}, {});
        return c;
    }
    void send_numbers(int n, int from = 0) {
        auto p = producer();
        for (int i = from; i < from + n; ++i)
            p->send({topic, "k", std::to_string(i), {{"n", std::to_string(i)}}, std::nullopt},
                    std::chrono::seconds(30));
    }
    // Polls until `n` messages arrived or `limit` passed.
    static std::vector<postroom::Message> take(
        postroom::transport::Consumer& c, std::size_t n,
        std::chrono::milliseconds limit = std::chrono::seconds(30)) {
        std::vector<postroom::Message> out;
        auto until = std::chrono::steady_clock::now() + limit;
        while (out.size() < n && std::chrono::steady_clock::now() < until)
            for (auto& m : c.poll_batch(n - out.size(), std::chrono::milliseconds(200)))
                out.push_back(std::move(m));
        return out;
    }
    std::string group() { return topic + "-g" + std::to_string(++counter); }
};

TYPED_TEST_SUITE_P(TransportContract);

TYPED_TEST_P(TransportContract, MessagesArriveInOrderWithKeyValueAndHeaders) {
    auto p = this->producer();
    postroom::OutgoingMessage m{this->topic,
                                "order-1",
                                std::string("v\0x", 3),
                                {{"key", "a header named key"},
                                 {"data", "and one named data"},
                                 {"\\odd", "backslash"},
                                 {"empty", ""},
                                 {"nothing", std::nullopt}},
                                std::nullopt};
    p->send(m, std::chrono::seconds(30));
    p->send({this->topic, std::nullopt, std::nullopt, {}, std::nullopt}, std::chrono::seconds(30));
    auto c = this->consumer(this->group());
    auto got = this->take(*c, 2);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].key, m.key);
    EXPECT_EQ(got[0].value, m.value);
    EXPECT_EQ(got[0].headers, m.headers);
    EXPECT_GT(got[0].timestamp_ms, 0);
    EXPECT_FALSE(got[1].key);
    EXPECT_FALSE(got[1].value);
    EXPECT_NE(got[0].position(), got[1].position());
    c->close();
}

TYPED_TEST_P(TransportContract, CommittedWorkIsNotDeliveredAgainAndUndoneWorkIs) {
    this->send_numbers(10);
    const auto g = this->group();
    {
        auto c = this->consumer(g);
        auto got = this->take(*c, 10);
        ASSERT_EQ(got.size(), 10u);
        for (int i = 0; i < 6; ++i) c->mark_done(got[static_cast<std::size_t>(i)]);
        EXPECT_GT(c->commit(), 0u);
        EXPECT_EQ(c->commit(), 0u) << "nothing new was done";
        c->close();
    }
    auto c = this->consumer(g);
    auto again = this->take(*c, 4);
    std::set<std::string> values;
    for (auto& m : again) values.insert(*m.value);
    EXPECT_EQ(values, (std::set<std::string>{"6", "7", "8", "9"}));
    EXPECT_TRUE(this->take(*c, 1, std::chrono::milliseconds(700)).empty())
        << "done messages came back";
    c->close();
}

TYPED_TEST_P(TransportContract, RedeliverFromDeliversThatMessageAndTheLaterOnesAgain) {
    this->send_numbers(5);
    auto c = this->consumer(this->group());
    auto got = this->take(*c, 5);
    ASSERT_EQ(got.size(), 5u);
    c->mark_done(got[0]);
    c->mark_done(got[1]);
    c->redeliver_from(got[2]);
    auto again = this->take(*c, 3);
    ASSERT_EQ(again.size(), 3u);
    EXPECT_EQ(*again[0].value, "2");
    EXPECT_EQ(*again[2].value, "4");
    c->close();
}

TYPED_TEST_P(TransportContract, PausedPartitionsDeliverNothingUntilResumed) {
    auto c = this->consumer(this->group());
    this->take(*c, 1, std::chrono::milliseconds(500));  // joined, assigned
    c->pause({{this->topic, 0}});
    this->send_numbers(3);
    EXPECT_TRUE(this->take(*c, 1, std::chrono::milliseconds(1500)).empty());
    c->resume({{this->topic, 0}});
    EXPECT_EQ(this->take(*c, 3).size(), 3u);
    c->close();
}

TYPED_TEST_P(TransportContract, TheRuntimeDeadLettersAPoisonEventAndHandlesTheRestOnce) {
    using namespace postroom;
    this->backend.create_topic(this->topic + ".dlq");
    {
        auto p = this->producer();
        for (int i = 0; i < 6; ++i) {
            Event e("ev-" + std::to_string(i), "urn:test", "order.created");
            e.data = std::to_string(i);
            e.datacontenttype = "text/plain";
            p->send(cloudevents::to_message(e, this->topic, "k"), std::chrono::seconds(30));
        }
    }
    runtime::ProcessorConfig config;
    config.name = "contract";
    config.group_id = this->group();
    config.broker_url = this->backend.url();
    config.topics = {this->topic};
    config.retry.max_attempts = 2;
    config.retry.initial_delay = std::chrono::milliseconds(10);
    config.commit_interval = std::chrono::milliseconds(0);
    config.consumer_properties = this->backend.consumer_properties();
    config.log = [](int, const std::string&) {};
    std::map<std::string, int> applied;
    runtime::Processor processor(config, [&](const Event& e, runtime::HandlerContext&) {
        if (e.id == "ev-3") throw runtime::NonRetryableError("poison");
        ++applied[e.id];
    });
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (processor.counters().processed + processor.counters().dead_lettered < 6 &&
           std::chrono::steady_clock::now() < until)
        processor.run_once(std::chrono::milliseconds(200));
    processor.close();
    EXPECT_EQ(applied.size(), 5u);
    for (auto& [id, n] : applied) EXPECT_EQ(n, 1) << id;
    EXPECT_EQ(processor.counters().dead_lettered, 1);

    auto dlq = [&] {
        transport::ConsumerOptions o;
        o.broker_url = this->backend.url();
        o.group_id = this->group();
        auto c = transport::open_consumer(o);
        c->subscribe({this->topic + ".dlq"}, {});
        return c;
    }();
    auto letters = this->take(*dlq, 1);
    ASSERT_EQ(letters.size(), 1u);
    const auto& letter = letters[0];
    EXPECT_EQ(letter.key, std::optional<std::string>("k"));
    auto header = [&](std::string_view name) {
        auto* h = find_header(letter.headers, name);
        return h && h->value ? *h->value : std::string("<missing>");
    };
    EXPECT_EQ(header(dlt::reason), "non-retryable");
    EXPECT_EQ(header(dlt::original_topic), this->topic);
    EXPECT_EQ(header(dlt::error_message), "poison");
    EXPECT_EQ(header("ce_id"), "ev-3");
    EXPECT_NE(header(dlt::original_offset), "<missing>");
    dlq->close();
}

REGISTER_TYPED_TEST_SUITE_P(TransportContract, MessagesArriveInOrderWithKeyValueAndHeaders,
                            CommittedWorkIsNotDeliveredAgainAndUndoneWorkIs,
                            RedeliverFromDeliversThatMessageAndTheLaterOnesAgain,
                            PausedPartitionsDeliverNothingUntilResumed,
                            TheRuntimeDeadLettersAPoisonEventAndHandlesTheRestOnce);
