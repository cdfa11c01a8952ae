#pragma once
// The transport interface: what the consumer runtime needs from a broker (the outbox relay
// and the dead-letter tooling still hold Kafka and Redis clients of their own; issue 17 moves
// them here), implemented by Kafka (and the embedded broker, which speaks the Kafka
// protocol) and by Redis Streams. open_consumer() / open_producer() pick the implementation
// from the broker URL.
//
// Vocabulary: a Kafka topic partition, or a Redis stream (partition 0). "Done" is what the
// application finished; commit() makes it durable (Kafka: the offset commit, never past an
// undone message; Redis: XACK of each done entry).
//
// Thread-safety: a Consumer belongs to one thread (its polling thread), except mark_done(),
// which may be called from any thread. A Producer may be used from any thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "postroom/message.hpp"

namespace postroom::transport {

struct RebalanceListener {
    // After partitions were assigned to this member (Redis: the streams, at subscribe).
    std::function<void(const std::vector<TopicPartition>&)> on_assigned;
    // Before partitions are taken away; what is marked done when it returns is committed.
    std::function<void(const std::vector<TopicPartition>&)> on_revoked;
    // Partitions were lost (session timeout): another member may own them already, so
    // nothing is committed for them.
    std::function<void(const std::vector<TopicPartition>&)> on_lost;
};

using Properties = std::map<std::string, std::string>;

struct ConsumerOptions {
    std::string broker_url = "embedded://";
    std::string group_id;  // required
    // Kafka: client.id. Redis: the consumer name's prefix (see redis::StreamConsumerConfig).
    std::string client_id = "postroom";
    // Kafka: librdkafka properties. Redis: the redis::StreamConsumerConfig keys
    // (consumer, start_id, claim_min_idle_ms, claim_interval_ms, block_ms).
    Properties properties;
    std::function<void(int level, const std::string& line)> log;
};

struct ProducerOptions {
    std::string broker_url = "embedded://";
    std::string client_id = "postroom";
    // The largest record this producer may send, key, value and headers together (Kafka:
    // message.max.bytes, unless `properties` names it; Redis: no client-side limit). Unset:
    // the client's default (Kafka: 1,000,000 bytes).
    std::optional<std::size_t> max_record_bytes;
    // Kafka: librdkafka properties. Redis: maxlen (approximate trimming of each stream).
    Properties properties;
};

class Consumer {
public:
    virtual ~Consumer() = default;
    virtual void subscribe(const std::vector<std::string>& topics, RebalanceListener listener) = 0;
    // Up to `max_messages`, waiting at most `timeout` for the first ones.
    virtual std::vector<Message> poll_batch(std::size_t max_messages,
                                            std::chrono::milliseconds timeout) = 0;
    virtual void mark_done(const Message& message) = 0;
    // Makes what is done durable; returns how many partitions (Kafka) or entries (Redis)
    // it moved, 0 when nothing new was done.
    virtual std::size_t commit() = 0;
    // `message` and the later undone messages of its partition are delivered again, from the
    // next poll on.
    virtual void redeliver_from(const Message& message) = 0;
    virtual void pause(const std::vector<TopicPartition>& partitions) = 0;
    virtual void resume(const std::vector<TopicPartition>& partitions) = 0;
    // Per assigned partition or stream: messages not yet delivered to the group; -1 unknown.
    virtual std::map<TopicPartition, int64_t> lag() const = 0;
    // Commits what is done and leaves. Idempotent.
    virtual void close() = 0;
};

// What a topic or stream takes from a producer.
struct TopicLimits {
    bool exists = true;
    // The largest record it accepts from this producer, key, value, headers and the record's
    // framing together: the smaller of the producer's limit and the topic's (Kafka:
    // max.message.bytes). nullopt: no limit known (Redis Streams, the embedded broker
    // with a producer that sets none).
    std::optional<std::size_t> max_record_bytes;
};

class Producer {
public:
    virtual ~Producer() = default;
    // Sends one message and waits for the broker's acknowledgement; throws on failure.
    virtual void send(const OutgoingMessage& message, std::chrono::milliseconds timeout) = 0;
    // Asks the broker about `topic`; throws when it cannot be asked (unreachable, ...).
    virtual TopicLimits limits(const std::string& topic) = 0;
    virtual void close() = 0;
};

// Throws ConfigurationError when `name` can never name a topic (or stream) on the broker
// at `broker_url` (Kafka's rules for kafka:// and embedded://; Redis takes any non-empty key).
void check_topic_name(const std::string& broker_url, const std::string& name);

std::unique_ptr<Consumer> open_consumer(const ConsumerOptions& options);
std::unique_ptr<Producer> open_producer(const ProducerOptions& options);

}  // namespace postroom::transport
