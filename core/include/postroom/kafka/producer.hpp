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

#include "postroom/delivery.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/config.hpp"
#include "postroom/message.hpp"

namespace postroom::kafka {

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
