#include <gtest/gtest.h>

#include "postroom/broker_url.hpp"
#include "postroom/error.hpp"

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
