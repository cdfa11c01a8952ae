#pragma once
// The embedded broker: an in-process Kafka-protocol broker on librdkafka's mock cluster.
// In-memory and for development, demos, notebooks and fast tests: nothing survives the
// process, and each partition keeps a bounded log (about 5 MB in librdkafka 2.0.2; older
// message sets are dropped beyond it, so a consumer reading a large topic from the start
// silently misses them). Use a real Kafka broker for anything larger.
//
// Reached as embedded:// (the process-wide default broker) or embedded://NAME (a separate
// named one) wherever a broker URL is accepted. It listens on 127.0.0.1 ports chosen by the
// system, so another process can connect through bootstrap_servers().
//
// Thread-safety: all members are thread-safe.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace postroom::embedded {

class Broker {
public:
    explicit Broker(int broker_count = 1);
    ~Broker();
    Broker(const Broker&) = delete;
    Broker& operator=(const Broker&) = delete;

    // The shared broker for embedded://NAME, created on first use, kept for the rest of
    // the process.
    static std::shared_ptr<Broker> shared(const std::string& name = "");

    // "127.0.0.1:port[,...]"
    std::string bootstrap_servers() const;

    // Creates a topic (replication is capped at the broker count). Creating an existing
    // topic again is an error only if its partition count differs.
    void create_topic(const std::string& topic, int partitions = 3, int replication_factor = 1);
    // Whether create_topic() made this topic. (The mock cluster itself would also create
    // topics on first use; postroom's clients refuse unknown topics like a real broker
    // with auto-creation off.)
    bool has_topic(const std::string& topic) const;
    // Partition count of a created topic, 0 if unknown.
    int partitions(const std::string& topic) const;

    // Fault injection for tests. api_key is the Kafka protocol API key (0 Produce, 1 Fetch,
    // 3 Metadata, 8 OffsetCommit, 22 InitProducerId, ...); errors are Kafka error codes,
    // served to the next requests of that kind, one each.
    void push_request_errors(int16_t api_key, const std::vector<int>& errors);
    void clear_request_errors(int16_t api_key);
    void set_broker_down(int32_t broker_id);
    void set_broker_up(int32_t broker_id);
    void set_broker_rtt(int32_t broker_id, int rtt_ms);
    void set_topic_error(const std::string& topic, int error);

    int broker_count() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace postroom::embedded
