#pragma once
// Transport-neutral message values: what a producer sends and what a consumer receives.
//
// Thread-safety: regular value types.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace postroom {

struct Header {
    std::string name;
    std::optional<std::string> value;  // Kafka allows null header values
    friend bool operator==(const Header&, const Header&) = default;
};

using Headers = std::vector<Header>;

// First header with this name, if any.
const Header* find_header(const Headers& headers, std::string_view name) noexcept;

struct OutgoingMessage {
    std::string topic;
    std::optional<std::string> key;    // decides the partition (murmur2, like the Java client)
    std::optional<std::string> value;  // absent = null value (a tombstone)
    Headers headers;
    std::optional<int32_t> partition;  // explicit partition, overriding the key
};

struct TopicPartition {
    std::string topic;
    int32_t partition = -1;
    friend auto operator<=>(const TopicPartition&, const TopicPartition&) = default;
};

// A consumed record.
struct Message {
    std::string topic;
    int32_t partition = -1;
    int64_t offset = -1;
    std::optional<std::string> key;
    std::optional<std::string> value;
    Headers headers;
    // Milliseconds since the epoch, as stamped by the producer or the broker; -1 if unknown.
    int64_t timestamp_ms = -1;
    // Redis Streams: the entry id ("1700000000000-0"; `partition` is 0 and `offset` -1).
    // Empty on Kafka.
    std::string id;
    // Redis Streams: how many times the group delivered this entry (1 = the first time).
    // 0 when the transport does not count deliveries (Kafka).
    int32_t delivery_count = 0;

    TopicPartition topic_partition() const { return {topic, partition}; }
    // Where the message sits in its partition, as text: the entry id on Redis Streams, the
    // offset on Kafka.
    std::string position() const { return id.empty() ? std::to_string(offset) : id; }
};

}  // namespace postroom

namespace postroom {

struct TopicPartitionOffset {
    std::string topic;
    int32_t partition = -1;
    int64_t offset = -1;
    friend bool operator==(const TopicPartitionOffset&, const TopicPartitionOffset&) = default;
};

}  // namespace postroom
