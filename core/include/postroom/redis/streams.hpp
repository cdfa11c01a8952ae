#pragma once
// Redis Streams as a postroom transport: a producer (XADD, batches as script calls of up to
// 1,000 adds, optional approximate MAXLEN trimming), a consumer in a consumer group
// (XREADGROUP, XACK only for what is done, pending entries recovered), and the
// administration the tools need.
//
// Messages on streams (the binding; symmetric with Kafka's, where headers become fields):
//   field "key"   the message key (absent = no key)
//   field "data"  the message value (absent = null value)
//   every header is a field of the same name; a header named "key" or "data", or whose
//   name starts with '\', is written as '\' + name; a header with a null value as
//   '\~' + name with an empty value. An entry with no key, value or header (XADD needs a
//   field) has the single field '\~'.
// A CloudEvent in binary mode therefore has ce_id, ce_source, ce_type, ce_specversion, ...
// fields, "content-type" and "data"; in structured mode "content-type" is
// application/cloudevents+json and "data" holds the JSON. Message::id is the entry id,
// Message::partition 0, Message::timestamp_ms the id's milliseconds.
//
// Pending entries, the Redis way to lose messages, are handled by the consumer:
// - it first reads its own pending entries (from id 0: what it was given before a crash or a
//   lost connection), then new ones (">");
// - every claim_interval it claims entries pending longer than claim_min_idle in other
//   consumers (XAUTOCLAIM): a dead consumer's entries are not stranded. Entries deleted
//   while pending (trimmed) are reported in counters() and the log, and acknowledged;
// - Message::delivery_count comes from the group's pending list, so the runtime can cap
//   attempts across crashes;
// - groups are created from an explicit id (start_id, default "0", not "$"); a NOGROUP
//   error (Redis restarted without its data, or the group deleted) recreates the group from
//   start_id with a loud warning, and everything is read again;
// - a consumer with pending entries is never deleted; idle consumers of the group without
//   pending entries are removed at subscribe.
//
// Thread-safety: StreamProducer and StreamAdmin may be used from any thread (calls are
// serialised). StreamConsumer belongs to its polling thread, except mark_done(), lag() and
// counters(), which may be called from any thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "postroom/delivery.hpp"
#include "postroom/message.hpp"
#include "postroom/transport.hpp"

namespace postroom::redis {

using Fields = std::vector<std::pair<std::string, std::string>>;

// The binding above, both ways.
Fields to_fields(const OutgoingMessage& message);
Message from_fields(std::string stream, std::string id, const Fields& fields);

struct StreamProducerConfig {
    std::string url;  // redis://[:password@]host:port/db
    // Approximate trimming at each add (XADD MAXLEN ~ n); nullopt = keep everything.
    std::optional<std::size_t> maxlen;
    std::chrono::milliseconds timeout{5'000};
};

// The outcome of one add of a batch: the entry id, or why it failed.
struct AddResult {
    std::string id;     // empty when failed
    std::string error;  // empty when added
    bool ok() const noexcept { return error.empty(); }
    // As a delivery report (partition 0; the id, or the error text).
    DeliveryReport report() const;
};

class StreamProducer final : public transport::Producer {
public:
    explicit StreamProducer(StreamProducerConfig config);
    ~StreamProducer() override;
    // XADD; returns the entry id. Throws TransportError (connection) or UsageError (refused).
    std::string add(const OutgoingMessage& message);
    // All adds in script calls of up to 1,000; per message its id or its error, in order.
    // Throws only when the connection fails (then any of them may have been added).
    std::vector<AddResult> add_batch(const std::vector<OutgoingMessage>& messages);
    // Sends the adds and returns without waiting for Redis, so the caller can prepare the
    // next batch meanwhile; the reports come with wait() (or a later call that reads replies:
    // batches are reported in the order they were sent). A lost connection reports the
    // entries whose replies did not come as failed: they may or may not have been added.
    std::shared_ptr<BatchDelivery> send_batch(std::vector<OutgoingMessage> messages);
    // Reads the replies of `batch` and of the batches sent before it.
    void wait(const BatchDelivery& batch);
    // Reads the replies of every batch sent.
    void flush();
    // Entries sent and not reported yet.
    std::size_t in_flight() const;
    void send(const OutgoingMessage& message, std::chrono::milliseconds timeout) override;
    // A stream is created by its first XADD, and Redis takes entries up to its
    // proto-max-bulk-len (512 MB by default) per field: no limit worth fitting records to.
    transport::TopicLimits limits(const std::string&) override { return {}; }
    void close() override;  // flush(), then close the connection

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

struct StreamConsumerConfig {
    std::string url;
    std::string group;  // required
    // Default: "<client_id>-<hostname>-<pid>", unique per process. Give a fixed name to
    // have a restarted process take up its own pending entries at once.
    std::string consumer;
    std::string client_id = "postroom";
    std::string start_id = "0";  // where a new group starts
    std::chrono::milliseconds claim_min_idle{30'000};
    std::chrono::milliseconds claim_interval{5'000};
    std::chrono::milliseconds timeout{5'000};                     // connect and reply timeout
    std::function<void(int level, const std::string& line)> log;  // default: stderr
};

struct StreamConsumerCounters {
    int64_t claimed = 0;                // entries claimed from other consumers
    int64_t deleted_while_pending = 0;  // pending entries found deleted (trimmed), acked
    int64_t groups_recreated = 0;       // NOGROUP recoveries
    int64_t reconnects = 0;             // connection losses recovered
    int64_t acked = 0;
};

class StreamConsumer final : public transport::Consumer {
public:
    explicit StreamConsumer(StreamConsumerConfig config);
    ~StreamConsumer() override;

    void subscribe(const std::vector<std::string>& streams,
                   transport::RebalanceListener listener = {}) override;
    std::vector<Message> poll_batch(std::size_t max_messages,
                                    std::chrono::milliseconds timeout) override;
    void mark_done(const Message& message) override;
    std::size_t commit() override;  // XACK of what is done; returns how many entries
    void redeliver_from(const Message& message) override;
    void pause(const std::vector<TopicPartition>& streams) override;
    void resume(const std::vector<TopicPartition>& streams) override;
    // Per stream: the group's lag (entries not yet delivered; -1 unknown), refreshed by
    // poll_batch at most once a second.
    std::map<TopicPartition, int64_t> lag() const override;
    void close() override;

    const std::string& consumer_name() const noexcept;
    StreamConsumerCounters counters() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

struct GroupInfo {
    std::string name;
    int64_t consumers = 0;
    int64_t pending = 0;
    int64_t lag = -1;  // -1 when Redis cannot tell (after deletions)
    std::string last_delivered_id;
};

struct PendingEntry {
    std::string id;
    std::string consumer;
    int64_t idle_ms = 0;
    int64_t deliveries = 0;
};

class StreamAdmin {
public:
    explicit StreamAdmin(const std::string& url);
    ~StreamAdmin();
    std::vector<std::string> streams();  // every key of type stream
    bool exists(const std::string& stream);
    int64_t length(const std::string& stream);
    std::vector<GroupInfo> groups(const std::string& stream);
    std::vector<PendingEntry> pending(const std::string& stream, const std::string& group,
                                      std::size_t count = 1000);
    // Entries from `start` to `end` (XRANGE ids, "-" and "+" for the ends), oldest first;
    // newest first when `reverse`.
    std::vector<Message> range(const std::string& stream, const std::string& start = "-",
                               const std::string& end = "+", std::size_t count = 1000,
                               bool reverse = false);
    std::size_t remove_entries(const std::string& stream, const std::vector<std::string>& ids);
    void remove_stream(const std::string& stream);
    // An empty stream (a stream exists only with an entry or a group: this makes one through
    // a group it then removes). Nothing changes if it exists already.
    void create_stream(const std::string& stream);
    void ping();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace postroom::redis
