#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "postroom/broker_url.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/admin.hpp"
#include "postroom/transport.hpp"

using namespace postroom;

TEST(BrokerUrl, KafkaSingleAndList) {
    auto u = parse_broker_url("kafka://localhost:19092");
    EXPECT_EQ(u.scheme, BrokerScheme::kafka);
    EXPECT_EQ(u.bootstrap_servers(), "localhost:19092");
    u = parse_broker_url("kafka://a:1,b,[::1]:3/");
    EXPECT_EQ(u.bootstrap_servers(), "a:1,b:9092,[::1]:3");
}

TEST(BrokerUrl, Embedded) {
    auto u = parse_broker_url("embedded://");
    EXPECT_EQ(u.scheme, BrokerScheme::embedded);
    EXPECT_EQ(u.embedded_name, "");
    EXPECT_EQ(parse_broker_url("embedded://tests-1").embedded_name, "tests-1");
}

TEST(BrokerUrl, Redis) {
    auto u = parse_broker_url("redis://127.0.0.1:16379/2");
    EXPECT_EQ(u.scheme, BrokerScheme::redis);
    EXPECT_EQ(u.hosts.at(0).port, 16379);
    EXPECT_EQ(u.redis_db, 2);
    EXPECT_EQ(parse_broker_url("redis://host").hosts.at(0).port, 6379);
}

TEST(BrokerUrl, BadUrlsSayWhatIsExpected) {
    for (const char* bad : {"localhost:9092", "http://x:1", "kafka://", "kafka://h:0",
                            "kafka://h:99999", "kafka://h:abc", "kafka://h:9092/path",
                            "kafka://a,,b", "embedded://bad name", "redis://h/x"}) {
        try {
            parse_broker_url(bad);
            FAIL() << bad;
        } catch (const ConfigurationError& e) {
            std::string what = e.what();
            EXPECT_NE(what.find(bad), std::string::npos) << what;
            EXPECT_NE(what.find("kafka://host:port"), std::string::npos) << what;
        }
    }
}

TEST(TopicNames, NamesThatCanNeverBeKafkaTopicsAreConfigurationErrors) {
    for (const std::string& bad : std::vector<std::string>{
             "a;b", "", ".", "..", "with space", "\xc3\xa9t\xc3\xa9", std::string(250, 'x')}) {
        EXPECT_THROW(postroom::kafka::check_topic_name(bad), postroom::ConfigurationError) << bad;
        EXPECT_THROW(postroom::transport::check_topic_name("embedded://", bad),
                     postroom::ConfigurationError)
            << bad;
    }
    for (const std::string& good :
         std::vector<std::string>{"orders", "orders.dlq", "a_b-C.9", std::string(249, 'x')})
        EXPECT_NO_THROW(postroom::kafka::check_topic_name(good)) << good;
    try {
        postroom::kafka::check_topic_name(std::string(10'000, ';'));
        FAIL() << "no error";
    } catch (const postroom::ConfigurationError& e) {
        EXPECT_LT(std::string(e.what()).size(), 300u) << "the name is echoed bounded";
    }
    // A Redis stream is any non-empty key.
    EXPECT_NO_THROW(postroom::transport::check_topic_name("redis://localhost:6379/0", "a;b"));
    EXPECT_THROW(postroom::transport::check_topic_name("redis://localhost:6379/0", ""),
                 postroom::ConfigurationError);
}
