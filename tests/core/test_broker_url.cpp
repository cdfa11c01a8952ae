#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "postroom/broker_url.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/admin.hpp"
#include "postroom/redact.hpp"
#include "postroom/stores/store.hpp"
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

// Issue 23, item 4: a password in a URL is never shown back. One rule (postroom/redact.hpp)
// for broker URLs, database URLs and libpq conninfo.
TEST(BrokerUrlRedaction, PasswordsAreMaskedAndEverythingElseKept) {
    const std::pair<const char*, const char*> cases[] = {
        {"redis://bob:s3cr3t-P4ss@host:6379/0", "redis://bob:***@host:6379/0"},
        {"redis://:s3cr3t-P4ss@host:6379/0", "redis://:***@host:6379/0"},
        {"kafka://alice:s3cr3t-P4ss@h1:9092,h2:9092", "kafka://alice:***@h1:9092,h2:9092"},
        {"postgresql://u:s3cr3t-P4ss@db.example:5432/shop?sslmode=require",
         "postgresql://u:***@db.example:5432/shop?sslmode=require"},
        {"postgresql://db/shop?user=u&password=s3cr3t-P4ss&sslmode=require",
         "postgresql://db/shop?user=u&password=***&sslmode=require"},
        {"postgresql://u:s3cr3t-P4ss@db/shop?sslpassword=k3y-P4ss",
         "postgresql://u:***@db/shop?sslpassword=***"},
        {"host=db port=5432 password=s3cr3t-P4ss dbname=shop",
         "host=db port=5432 password=*** dbname=shop"},
        {"host=db password = 's3cr3t \\' P4ss' dbname=shop", "host=db password = *** dbname=shop"},
        // A password holding '@', ':' or '/': everything up to the last '@' is hidden.
        {"redis://bob:s3@cr:3t/P4ss@host:6379/0", "redis://bob:***@host:6379/0"},
        {"postgresql://u:p@ss:w/rd@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"},
        // Malformed: no "://", a single slash, an empty password.
        {"kafka:alice:s3cr3t-P4ss@host", "kafka:***@host"},
        {"redis:/bob:s3cr3t-P4ss@host", "redis:***@host"},
        {"redis://bob:@host", "redis://bob:***@host"},
        // Nothing to hide: unchanged.
        {"kafka://127.0.0.1:19092", "kafka://127.0.0.1:19092"},
        {"kafka://[::1]:9092,b", "kafka://[::1]:9092,b"},
        {"redis://127.0.0.1:16379/0", "redis://127.0.0.1:16379/0"},
        {"postgresql://postgres@127.0.0.1:15432/postroom",
         "postgresql://postgres@127.0.0.1:15432/postroom"},
        {"sqlite:///var/lib/shop.db", "sqlite:///var/lib/shop.db"},
        {"embedded://tests-1", "embedded://tests-1"},
        {"", ""},
    };
    for (const auto& [url, expected] : cases) EXPECT_EQ(redacted_url(url), expected) << url;
}

TEST(BrokerUrlRedaction, SecretsQuotedByALibraryAreMaskedInAnyForm) {
    const std::string url = "postgresql://u:s3cr3t%25zz@db/shop?password=k3y-P4ss";
    // libpq quotes the token it could not decode, and decodes the ones it could.
    EXPECT_EQ(redact_secrets("invalid percent-encoded token: \"s3cr3t%25zz\"", url),
              "invalid percent-encoded token: \"***\"");
    EXPECT_EQ(redact_secrets("password s3cr3t%zz and k3y-P4ss", url), "password *** and ***");
    EXPECT_EQ(redact_secrets("nothing secret here", "redis://host:6379/0"), "nothing secret here");
}

TEST(BrokerUrlRedaction, ParseErrorsNeverQuoteThePassword) {
    for (const char* bad :
         {"kafka://alice:s3cr3t-P4ss@127.0.0.1:1",  // credentials in a kafka:// URL
          "redis://bob:s3cr3t-P4ss@host:abc/0",     // bad port
          "redis://bob:s3cr3t/P4ss@host:6379/0",    // '/' in the password: a bad port
          "redis://:s3cr3t/P4ss@host:6379/0",       // ... or no host
          "redis://bob:s3cr3t-P4ss@host:6379/x",    // bad database
          "redis://bob:s3cr3t-P4ss@ho st:6379/0",   // bad host
          "mqtt://bob:s3cr3t-P4ss@host:1883",       // unknown scheme
          "bob:s3cr3t-P4ss@host:6379"}) {           // no scheme
        try {
            parse_broker_url(bad);
            ADD_FAILURE() << "accepted";
        } catch (const ConfigurationError& e) {
            const std::string what = e.what();
            EXPECT_EQ(what.find("s3cr3t"), std::string::npos) << what;
            EXPECT_EQ(what.find("P4ss"), std::string::npos) << what;
            EXPECT_NE(what.find("kafka://host:port"), std::string::npos) << what;
        }
    }
    try {
        parse_broker_url("kafka://alice:s3cr3t-P4ss@127.0.0.1:1");
    } catch (const ConfigurationError& e) {
        EXPECT_NE(std::string(e.what()).find("kafka://alice:***@127.0.0.1:1"), std::string::npos)
            << e.what();
        EXPECT_NE(std::string(e.what()).find("sasl.password"), std::string::npos) << e.what();
    }
}

TEST(BrokerUrlRedaction, StoreAndDatabaseUrlErrorsNeverQuoteThePassword) {
    for (auto open : {&stores::open_store, &stores::open_database}) {
        try {
            open("mysql://u:s3cr3t-P4ss@127.0.0.1:1/x");
            ADD_FAILURE() << "accepted";
        } catch (const ConfigurationError& e) {
            EXPECT_EQ(std::string(e.what()).find("s3cr3t"), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("mysql://u:***@127.0.0.1:1/x"), std::string::npos)
                << e.what();
        }
    }
}
