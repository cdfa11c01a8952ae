#pragma once
// Transport-neutral message values: what a producer sends and what a consumer receives.
//
// Thread-safety: regular value types.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
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

// ---------------------------------------------------------------------------------------
// Borrowed views, for paths that read or forward many records without copying each one
// (dead-letter replay and statistics). A view is valid while what it points into is.

struct HeaderView {
    std::string_view name;
    std::optional<std::string_view> value;
};

// A consumed record, borrowed from the MessageBatch that holds it. Fields as in Message.
struct MessageView {
    std::string_view topic;
    int32_t partition = -1;
    int64_t offset = -1;
    std::optional<std::string_view> key;
    std::optional<std::string_view> value;
    std::span<const HeaderView> headers;
    int64_t timestamp_ms = -1;
    std::string_view id;  // Redis Streams' entry id; empty on Kafka

    // First header with this name, if any.
    const HeaderView* find_header(std::string_view name) const noexcept;
};

// A copy that owns its data.
Message to_message(const MessageView& view);

// Records received together, read as views; the batch owns what the views point into.
// Movable (the views stay valid across a move), not copyable.
class MessageBatch {
public:
    // Whatever keeps the records alive (the transport's own buffers).
    struct Storage {
        virtual ~Storage() = default;
    };

    MessageBatch() = default;
    // Views over these messages, which the batch keeps.
    explicit MessageBatch(std::vector<Message> messages);
    // Views built by a transport: `headers` holds every view's headers (each view's span
    // points into it), `storage` what both point into.
    MessageBatch(std::unique_ptr<Storage> storage, std::vector<MessageView> views,
                 std::vector<HeaderView> headers);
    MessageBatch(MessageBatch&&) noexcept = default;
    MessageBatch& operator=(MessageBatch&&) noexcept = default;

    std::span<const MessageView> views() const noexcept { return views_; }
    std::size_t size() const noexcept { return views_.size(); }
    bool empty() const noexcept { return views_.empty(); }
    // Drops the views `drop` returns true for (their data stays until the batch goes).
    template <class Pred>
    void drop_if(Pred drop) {
        std::erase_if(views_, drop);
    }

private:
    std::unique_ptr<Storage> storage_;
    std::vector<HeaderView> headers_;
    std::vector<MessageView> views_;
};

// What to send, borrowed: the producer copies it when it queues it.
struct OutgoingView {
    std::string_view topic;
    std::optional<std::string_view> key;
    std::optional<std::string_view> value;
    std::span<const HeaderView> headers;
    std::optional<int32_t> partition;
};

// A copy that owns its data.
OutgoingMessage to_outgoing_message(const OutgoingView& view);

}  // namespace postroom

namespace postroom {

struct TopicPartitionOffset {
    std::string topic;
    int32_t partition = -1;
    int64_t offset = -1;
    friend bool operator==(const TopicPartitionOffset&, const TopicPartitionOffset&) = default;
};

}  // namespace postroom
