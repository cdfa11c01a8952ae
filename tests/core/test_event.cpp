#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "postroom/error.hpp"
#include "postroom/event.hpp"

using postroom::CodecError;
using postroom::Event;

namespace {

Event full_event() {
    Event e("evt-1", "https://example.com/orders", "com.example.order.created");
    e.time = "2026-11-27T08:00:00.123Z";
    e.subject = "order/42";
    e.datacontenttype = "application/json";
    e.dataschema = "https://example.com/schemas/order.json";
    e.data = R"({"order":42,"items":["a","b"]})";
    e.extensions["traceparent"] = "00-abc-def-01";
    e.extensions["partitionkey"] = "customer-7";
    return e;
}

// Expects validate() to fail naming `attribute`.
void expect_invalid(const Event& e, const std::string& attribute) {
    try {
        e.validate();
        FAIL() << "expected a CodecError for attribute " << attribute;
    } catch (const CodecError& err) {
        EXPECT_EQ(err.attribute(), attribute) << err.what();
        EXPECT_NE(std::string(err.what()).find(attribute), std::string::npos) << err.what();
        EXPECT_EQ(err.retriable(), postroom::Retriable::no);
    }
}

}  // namespace

TEST(Event, ValidEventPasses) {
    EXPECT_NO_THROW(full_event().validate());
}

TEST(Event, MinimalEventPasses) {
    EXPECT_NO_THROW(Event("1", "/s", "t").validate());
}

TEST(Event, EveryRequiredAttributeIsChecked) {
    auto e = full_event();
    e.id.clear();
    expect_invalid(e, "id");
    e = full_event();
    e.source.clear();
    expect_invalid(e, "source");
    e = full_event();
    e.source = "has space";
    expect_invalid(e, "source");
    e = full_event();
    e.type.clear();
    expect_invalid(e, "type");
    e = full_event();
    e.specversion = "0.3";
    expect_invalid(e, "specversion");
    e = full_event();
    e.specversion.clear();
    expect_invalid(e, "specversion");
}

TEST(Event, EveryOptionalAttributeIsChecked) {
    auto e = full_event();
    e.time = "yesterday";
    expect_invalid(e, "time");
    e = full_event();
    e.time = "2026-13-01T00:00:00Z";
    expect_invalid(e, "time");
    e = full_event();
    e.time = "2026-01-01T00:00:00";
    expect_invalid(e, "time");
    e = full_event();
    e.subject = "";
    expect_invalid(e, "subject");
    e = full_event();
    e.datacontenttype = "json";
    expect_invalid(e, "datacontenttype");
    e = full_event();
    e.datacontenttype = "application/";
    expect_invalid(e, "datacontenttype");
    e = full_event();
    e.dataschema = "relative/path";
    expect_invalid(e, "dataschema");
    e = full_event();
    e.extensions["Bad-Name"] = "x";
    expect_invalid(e, "Bad-Name");
    e = full_event();
    e.extensions["waytoolongextensionname"] = "x";
    expect_invalid(e, "waytoolongextensionname");
}

TEST(Event, Rfc3339Forms) {
    EXPECT_TRUE(postroom::is_rfc3339("2026-11-27T08:00:00Z"));
    EXPECT_TRUE(postroom::is_rfc3339("2026-11-27T08:00:00.5+01:00"));
    EXPECT_TRUE(postroom::is_rfc3339("2026-11-27t08:00:00-05:30"));
    EXPECT_FALSE(postroom::is_rfc3339("2026-11-27 08:00:00Z"));
    EXPECT_FALSE(postroom::is_rfc3339("2026-11-27T08:00:00.Z"));
    EXPECT_FALSE(postroom::is_rfc3339("2026-11-27T25:00:00Z"));
    EXPECT_TRUE(postroom::is_rfc3339(postroom::now_rfc3339()));
}

TEST(Event, JsonRoundTripWithJsonData) {
    auto e = full_event();
    auto back = Event::from_json(e.to_json());
    EXPECT_EQ(back, e);
}

TEST(Event, JsonDataIsEmbeddedNotQuoted) {
    auto json = full_event().to_json();
    EXPECT_NE(json.find(R"("data":{"order":42)"), std::string::npos) << json;
}

TEST(Event, JsonRoundTripWithBinaryData) {
    Event e("b1", "/bin", "blob");
    e.datacontenttype = "application/octet-stream";
    e.data = std::string("\x00\x01\xff\xfe binary", 12);
    auto json = e.to_json();
    EXPECT_NE(json.find("data_base64"), std::string::npos);
    EXPECT_EQ(Event::from_json(json), e);
}

TEST(Event, JsonRoundTripWithTextData) {
    Event e("t1", "/text", "note");
    e.datacontenttype = "text/plain; charset=utf-8";
    e.data = "hello \"world\"";
    auto json = e.to_json();
    EXPECT_NE(json.find(R"("data":"hello \"world\"")"), std::string::npos) << json;
    EXPECT_EQ(Event::from_json(json), e);
}

TEST(Event, JsonRoundTripWithoutData) {
    Event e("n1", "/none", "ping");
    EXPECT_EQ(Event::from_json(e.to_json()), e);
}

TEST(Event, RandomBinaryPayloadsRoundTrip) {
    std::mt19937 rng(42);
    for (int i = 0; i < 200; ++i) {
        Event e("r" + std::to_string(i), "/random", "bytes");
        e.datacontenttype = "application/octet-stream";
        std::string bytes(static_cast<std::size_t>(rng() % 64), '\0');
        for (auto& c : bytes) c = static_cast<char>(rng() & 0xff);
        e.data = bytes;
        ASSERT_EQ(Event::from_json(e.to_json()), e) << "payload size " << bytes.size();
    }
}

TEST(Event, JsonDataThatDoesNotParseIsRejected) {
    Event e("x", "/s", "t");
    e.datacontenttype = "application/json";
    e.data = "{not json";
    try {
        (void)e.to_json();
        FAIL();
    } catch (const CodecError& err) {
        EXPECT_EQ(err.attribute(), "data");
    }
}

TEST(Event, FromJsonRejectsMalformedInput) {
    EXPECT_THROW(Event::from_json("{"), CodecError);
    EXPECT_THROW(Event::from_json("[1,2]"), CodecError);
    try {
        Event::from_json(R"({"specversion":"1.0","source":"/s","type":"t"})");
        FAIL();
    } catch (const CodecError& err) {
        EXPECT_EQ(err.attribute(), "id");
    }
    try {
        Event::from_json(R"({"specversion":"1.0","id":7,"source":"/s","type":"t"})");
        FAIL();
    } catch (const CodecError& err) {
        EXPECT_EQ(err.attribute(), "id");
    }
    try {
        Event::from_json(
            R"({"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"!!"})");
        FAIL();
    } catch (const CodecError& err) {
        EXPECT_EQ(err.attribute(), "data_base64");
    }
    try {
        Event::from_json(
            R"({"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":"AA=="})");
        FAIL();
    } catch (const CodecError& err) {
        EXPECT_EQ(err.attribute(), "data");
    }
}

TEST(Event, FromJsonStringifiesScalarExtensions) {
    auto e = Event::from_json(
        R"({"specversion":"1.0","id":"1","source":"/s","type":"t","retries":3,"sampled":true})");
    EXPECT_EQ(e.extensions.at("retries"), "3");
    EXPECT_EQ(e.extensions.at("sampled"), "true");
}

TEST(Event, AttributesByName) {
    Event e;
    for (auto name : postroom::context_attribute_names)
        e.set_attribute(name, std::string(name) + "!");
    EXPECT_EQ(e.specversion, "specversion!");
    EXPECT_EQ(e.id, "id!");
    EXPECT_EQ(e.source, "source!");
    EXPECT_EQ(e.type, "type!");
    EXPECT_EQ(e.time, "time!");
    EXPECT_EQ(e.subject, "subject!");
    EXPECT_EQ(e.datacontenttype, "datacontenttype!");
    EXPECT_EQ(e.dataschema, "dataschema!");
    EXPECT_TRUE(e.extensions.empty());
    for (auto name : postroom::context_attribute_names)
        EXPECT_EQ(e.attribute(name), std::string(name) + "!");

    // Any other name is an extension, even one validate() then rejects.
    e.set_attribute("tenant", "acme");
    e.set_attribute("data", "x");
    EXPECT_EQ(e.extensions,
              (std::map<std::string, std::string>{{"data", "x"}, {"tenant", "acme"}}));
    EXPECT_EQ(e.attribute("tenant"), "acme");
    EXPECT_FALSE(e.data.has_value());

    Event minimal("i", "s", "t");
    EXPECT_EQ(minimal.attribute("time"), std::nullopt);
    EXPECT_EQ(minimal.attribute("tenant"), std::nullopt);
    EXPECT_EQ(minimal.attribute("specversion"), "1.0");
    EXPECT_EQ(Event().attribute("id"), "");  // a required attribute is there even when empty
}

TEST(Event, ForEachAttributeVisitsInTheDocumentedOrder) {
    std::vector<std::string> seen;
    auto e = full_event();
    e.for_each_attribute([&](std::string_view name, const std::string& value) {
        seen.push_back(std::string(name) + "=" + value);
        EXPECT_EQ(e.attribute(name), value);
    });
    EXPECT_EQ(seen, (std::vector<std::string>{
                        "specversion=1.0", "id=evt-1", "source=https://example.com/orders",
                        "type=com.example.order.created", "time=2026-11-27T08:00:00.123Z",
                        "subject=order/42", "datacontenttype=application/json",
                        "dataschema=https://example.com/schemas/order.json",
                        "partitionkey=customer-7", "traceparent=00-abc-def-01"}));

    seen.clear();
    Event("i", "s", "t").for_each_context_attribute([&](std::string_view name, const std::string&) {
        seen.emplace_back(name);
    });
    EXPECT_EQ(seen, (std::vector<std::string>{"specversion", "id", "source", "type"}));
}

TEST(Event, JsonMembersComeInTheDocumentedOrder) {
    EXPECT_EQ(full_event().to_json(),
              R"({"specversion":"1.0","id":"evt-1","source":"https://example.com/orders",)"
              R"("type":"com.example.order.created","time":"2026-11-27T08:00:00.123Z",)"
              R"("subject":"order/42","datacontenttype":"application/json",)"
              R"("dataschema":"https://example.com/schemas/order.json",)"
              R"("partitionkey":"customer-7","traceparent":"00-abc-def-01",)"
              R"("data":{"order":42,"items":["a","b"]}})");
}
