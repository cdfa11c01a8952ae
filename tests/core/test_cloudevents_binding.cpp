#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "postroom/binding.hpp"
#include "postroom/error.hpp"

using namespace postroom;
using namespace postroom::cloudevents;

namespace {
Message as_consumed(const OutgoingMessage& out) {
    Message m;
    m.topic = out.topic;
    m.partition = 0;
    m.offset = 0;
    m.key = out.key;
    m.value = out.value;
    m.headers = out.headers;
    return m;
}

Event sample() {
    Event e("id-1", "/orders", "order.created");
    e.time = "2026-11-27T08:00:00Z";
    e.subject = "42";
    e.datacontenttype = "application/json";
    e.dataschema = "urn:schema:order";
    e.data = R"({"n":1})";
    e.extensions["tenant"] = "acme";
    return e;
}
}  // namespace

TEST(KafkaBinding, BinaryModeHeaders) {
    auto m = to_message(sample(), "orders", std::string("k1"));
    EXPECT_EQ(m.key, "k1");
    EXPECT_EQ(m.value, R"({"n":1})");
    EXPECT_EQ(find_header(m.headers, "ce_id")->value, "id-1");
    EXPECT_EQ(find_header(m.headers, "ce_specversion")->value, "1.0");
    EXPECT_EQ(find_header(m.headers, "content-type")->value, "application/json");
    EXPECT_EQ(find_header(m.headers, "ce_tenant")->value, "acme");
    EXPECT_EQ(find_header(m.headers, "ce_datacontenttype"), nullptr);
}

TEST(KafkaBinding, BinaryModeHeaderOrder) {
    auto e = sample();
    e.extensions["alpha"] = "a";
    std::vector<std::string> headers;
    for (const auto& h : to_message(e, "orders").headers)
        headers.push_back(h.name + "=" + *h.value);
    EXPECT_EQ(headers,
              (std::vector<std::string>{
                  "ce_specversion=1.0", "ce_id=id-1", "ce_source=/orders", "ce_type=order.created",
                  "ce_time=2026-11-27T08:00:00Z", "ce_subject=42", "ce_dataschema=urn:schema:order",
                  "content-type=application/json", "ce_alpha=a", "ce_tenant=acme"}));
}

TEST(KafkaBinding, BinaryRoundTrip) {
    auto e = sample();
    EXPECT_EQ(to_event(as_consumed(to_message(e, "t"))), e);
}

TEST(KafkaBinding, StructuredRoundTrip) {
    auto e = sample();
    auto m = to_message(e, "t", std::nullopt, EventMode::structured);
    EXPECT_EQ(find_header(m.headers, "content-type")->value,
              std::string(Event::structured_content_type));
    EXPECT_EQ(to_event(as_consumed(m)), e);
}

TEST(KafkaBinding, PartitionKeyExtensionBecomesTheKey) {
    auto e = sample();
    e.extensions["partitionkey"] = "customer-9";
    EXPECT_EQ(to_message(e, "t", std::string("ignored")).key, "customer-9");
}

TEST(KafkaBinding, NotACloudEventIsACodecError) {
    Message m;
    m.value = "plain";
    EXPECT_FALSE(is_cloudevent(m.headers));
    EXPECT_THROW(to_event(m), CodecError);
}

TEST(KafkaBinding, InvalidBinaryAttributeNamesIt) {
    auto m = as_consumed(to_message(sample(), "t"));
    for (auto& h : m.headers)
        if (h.name == "ce_time") h.value = "not-a-time";
    try {
        to_event(m);
        FAIL();
    } catch (const CodecError& e) {
        EXPECT_EQ(e.attribute(), "time");
    }
}

TEST(KafkaBinding, InvalidEventIsRejectedBeforeSending) {
    auto e = sample();
    e.type.clear();
    EXPECT_THROW(to_message(e, "t"), CodecError);
    EXPECT_THROW(to_message(e, "t", std::nullopt, EventMode::structured), CodecError);
}
