#pragma once
// Kafka producer: idempotent by default, a delivery report for every message, batch send.
//
// Thread-safety: all members may be called from any thread. Delivery callbacks run on the
// thread that calls poll(), flush(), send(), send_batch() or wait(), never concurrently
// with each other.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "postroom/error.hpp"
#include "postroom/kafka/config.hpp"
#include "postroom/message.hpp"

namespace postroom::kafka {

enum class Persistence {
    not_persisted,       // certainly not written: safe to retry without a duplicate
    possibly_persisted,  // outcome unknown (timeout, lost connection): a retry may duplicate
    persisted,           // acknowledged by the broker
};

struct DeliveryReport {
    int32_t partition = -1;
    int64_t offset = -1;
    int error_code = 0;  // librdkafka rd_kafka_resp_err_t; 0 = delivered
    Persistence persistence = Persistence::not_persisted;
    std::string id;          // Redis Streams: the entry id ("" on Kafka)
    std::string error_text;  // a non-Kafka transport's own error text (Redis), if it failed

    bool ok() const noexcept { return error_code == 0 && error_text.empty(); }
    // Human-readable error text ("" when ok).
    std::string error_message() const;
    Retriable retriable() const noexcept;
    // Throws the postroom error this report stands for; no-op when ok.
    void raise(std::string_view topic) const;
};

// The outcome of a batch, in the order the messages were given.
class BatchDelivery {
public:
    std::size_t size() const noexcept { return reports_.size(); }
    std::size_t pending() const noexcept;
    bool done() const noexcept { return pending() == 0; }
    std::size_t failed() const noexcept;  // valid once done
    const std::vector<DeliveryReport>& reports() const noexcept { return reports_; }
    // Empty for a batch queued from views (they were copied as they were queued).
    const std::vector<OutgoingMessage>& messages() const noexcept { return messages_; }
    // Throws the first failure as a postroom error, mentioning how many failed.
    void raise_for_failures() const;
    // A batch whose reports are all known already (transports that answer synchronously,
    // such as Redis Streams' pipelined XADD).
    static std::shared_ptr<BatchDelivery> completed(std::vector<OutgoingMessage> messages,
                                                    std::vector<DeliveryReport> reports);
    // A batch whose reports another transport gives later, each once, with report() (Redis
    // Streams' adds sent without waiting).
    static std::shared_ptr<BatchDelivery> awaiting(std::vector<OutgoingMessage> messages);
    void report(std::size_t index, DeliveryReport report);

    struct Impl;

private:
    friend class Producer;
    friend struct Impl;
    BatchDelivery() = default;
    std::vector<OutgoingMessage> messages_;  // owned until delivered (librdkafka points into it)
    std::vector<DeliveryReport> reports_;
    std::shared_ptr<Impl> impl_;
};

class Producer {
public:
    using DeliveryCallback = std::function<void(const DeliveryReport&)>;

    explicit Producer(ProducerConfig config);
    ~Producer();  // close(config.close_timeout)
    Producer(Producer&&) noexcept;
    Producer& operator=(Producer&&) noexcept;

    // Queues one message; `on_delivery` runs once with its report (see thread-safety).
    // Throws at once for what can never succeed (unknown partition, too large, closed).
    void produce(const OutgoingMessage& message, DeliveryCallback on_delivery = {});

    // Sends one message and waits for its report (throws on failure).
    DeliveryReport send(const OutgoingMessage& message,
                        std::chrono::milliseconds timeout = std::chrono::seconds(60));

    // Queues a whole batch; the messages are moved into the returned handle and stay there
    // until each one is reported. Follow with wait().
    std::shared_ptr<BatchDelivery> produce_batch(std::vector<OutgoingMessage> messages);
    // Queues a batch of borrowed messages, copying each as it is queued (the views need not
    // outlive the call). The handle has reports but no messages(). Follow with wait().
    std::shared_ptr<BatchDelivery> produce_batch(std::span<const OutgoingView> messages);
    // Serves delivery reports until the batch is done or `timeout` passes. True when done.
    bool wait(const BatchDelivery& batch, std::chrono::milliseconds timeout);
    // produce_batch + wait until done (reports arrive within delivery_timeout).
    std::shared_ptr<BatchDelivery> send_batch(std::vector<OutgoingMessage> messages);

    // Serves delivery reports; returns how many events were served.
    int poll(std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
    // Waits for every queued message; true when none is left.
    bool flush(std::chrono::milliseconds timeout);
    // Messages queued or in flight.
    int in_flight() const;

    // Flushes, then reports what is still queued after `timeout` as failed (purged) and
    // releases the client. Idempotent.
    void close(std::chrono::milliseconds timeout);
    void close();
    bool closed() const noexcept;

    // Whether the broker confirmed what the producer needs for idempotence (checked
    // against the live connection's protocol features and producer id).
    bool idempotence_enabled() const;

    // The largest record this producer sends (librdkafka's message.max.bytes, 1,000,000 unless
    // configured): key, value, headers and the record's framing together.
    std::size_t max_message_bytes() const;

    const ProducerConfig& config() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace postroom::kafka
