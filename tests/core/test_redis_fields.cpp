// The Redis Streams field codec (to_fields / from_fields): how a message maps onto entry
// fields and back. Pure functions: these tests need no server.
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "postroom/redis/streams.hpp"

using namespace postroom;
using namespace postroom::redis;

namespace {

using Field = std::pair<std::string, std::string>;

Message round_trip(const OutgoingMessage& m, const std::string& id = "1700000000123-4") {
    return from_fields(m.topic, id, to_fields(m));
}

}  // namespace

TEST(RedisFieldCodec, KeyValueAndHeadersRoundTripInOrder) {
    OutgoingMessage m{"orders", "k-1", "v-1", {{"ce_id", "1"}, {"b", "2"}, {"a", "3"}}, {}};
    auto back = round_trip(m);
    EXPECT_EQ(back.topic, "orders");
    EXPECT_EQ(back.key, m.key);
    EXPECT_EQ(back.value, m.value);
    EXPECT_EQ(back.headers, m.headers);
    EXPECT_EQ(back.id, "1700000000123-4");
    EXPECT_EQ(back.partition, 0);
    EXPECT_EQ(back.offset, -1);
    EXPECT_EQ(back.timestamp_ms, 1700000000123);
}

TEST(RedisFieldCodec, BinaryKeyValueAndHeadersRoundTrip) {
    const std::string bytes("\0\x01\xff\r\n\\~", 7);
    OutgoingMessage m{"s", bytes, bytes + bytes, {{"h", bytes}, {std::string("n\0m", 3), "x"}}, {}};
    auto back = round_trip(m);
    EXPECT_EQ(back.key, m.key);
    EXPECT_EQ(back.value, m.value);
    EXPECT_EQ(back.headers, m.headers);
}

TEST(RedisFieldCodec, EmptyValuesStayEmptyAndAbsentOnesAbsent) {
    OutgoingMessage empty{"s", "", "", {{"h", ""}}, {}};
    auto back = round_trip(empty);
    ASSERT_TRUE(back.key.has_value());
    EXPECT_EQ(*back.key, "");
    ASSERT_TRUE(back.value.has_value());
    EXPECT_EQ(*back.value, "");
    EXPECT_EQ(back.headers, (Headers{{"h", ""}}));

    OutgoingMessage absent{"s", std::nullopt, std::nullopt, {{"h", std::nullopt}}, {}};
    back = round_trip(absent);
    EXPECT_FALSE(back.key.has_value());
    EXPECT_FALSE(back.value.has_value());
    EXPECT_EQ(back.headers, (Headers{{"h", std::nullopt}}));
}

TEST(RedisFieldCodec, FieldNamesFollowTheBinding) {
    OutgoingMessage m{"s",
                      "k",
                      "v",
                      {{"key", "1"}, {"data", "2"}, {"\\x", "3"}, {"n", std::nullopt}, {"h", "4"}},
                      {}};
    EXPECT_EQ(to_fields(m), (Fields{{"key", "k"},
                                    {"data", "v"},
                                    {"\\key", "1"},
                                    {"\\data", "2"},
                                    {"\\\\x", "3"},
                                    {"\\~n", ""},
                                    {"h", "4"}}));
    EXPECT_EQ(round_trip(m).headers, m.headers);
}

TEST(RedisFieldCodec, AMessageWithNothingHasNoFieldsAndItsEntryReadsBackEmpty) {
    OutgoingMessage nothing{"s", std::nullopt, std::nullopt, {}, {}};
    EXPECT_TRUE(to_fields(nothing).empty());
    // XADD needs a field: such an entry is written with the single field "\~".
    auto back = from_fields("s", "5-0", Fields{Field{"\\~", ""}});
    EXPECT_FALSE(back.key.has_value());
    EXPECT_FALSE(back.value.has_value());
    EXPECT_TRUE(back.headers.empty());
    EXPECT_EQ(back.timestamp_ms, 5);
}

TEST(RedisFieldCodec, DuplicateHeadersAreKept) {
    OutgoingMessage m{"s", std::nullopt, "v", {{"h", "1"}, {"h", "2"}, {"h", std::nullopt}}, {}};
    EXPECT_EQ(round_trip(m).headers, m.headers);
}
