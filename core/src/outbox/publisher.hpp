#pragma once
// From outbox rows to the broker: a row read becomes the message to publish (RowReader), a
// batch of them goes out as a Flight, and the Publisher owns the producer (Kafka, or Redis
// Streams for redis:// brokers) that publishes flights and settles them into sent and failed
// rows.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "postroom/kafka/producer.hpp"
#include "postroom/message.hpp"
#include "postroom/outbox/outbox.hpp"
#include "postroom/redis/streams.hpp"
#include "postroom/stores/store.hpp"
#include "row_router.hpp"

namespace postroom::outbox::detail {

using SeqRange = std::pair<int64_t, int64_t>;

// A row read to be published.
struct Pending {
    int64_t seq;
    std::string id, aggregate_id, topic;
    std::optional<OutgoingMessage> message;  // nullopt: cannot be published
    std::string error;
};

// Turns rows read from the outbox table into messages. Thread-safe (const).
class RowReader {
public:
    // `config` and `router` must outlive the reader.
    RowReader(const OutboxConfig& config, const RowRouter& router)
        : config_(config), router_(router) {}

    // The routing's extra columns of a row read from `from` on, as text.
    std::vector<std::optional<std::string>> extras(std::vector<stores::SqlValue>& row,
                                                   std::size_t from) const;

    // r: seq, id, aggregatetype, aggregateid, type, payload, headers, topic, then (from
    // `extras_from` on) the routing's extra columns. A row that cannot be published has no
    // message and says why in `error`.
    Pending pending(std::vector<stores::SqlValue>&& r, std::size_t extras_from) const;

private:
    const OutboxConfig& config_;
    const RowRouter& router_;
};

// A batch on its way to the broker.
struct Flight {
    explicit Flight(std::vector<Pending> r) : rows(std::move(r)) {}
    std::vector<Pending> rows;
    std::vector<std::size_t> index;           // message position -> rows position
    std::shared_ptr<BatchDelivery> delivery;  // Kafka; Redis answers at once
    std::vector<int64_t> sent;
    std::vector<std::pair<int64_t, std::string>> failed;
    bool trouble = false, recreate_producer = false;
    std::string why;

    SeqRange range() const { return {rows.front().seq, rows.back().seq}; }
};

// The relay's producer, created on first use. Not thread-safe: the relay loop's thread only.
class Publisher {
public:
    // `config` must outlive the publisher.
    Publisher(const OutboxConfig& config, bool to_redis) : config_(config), to_redis_(to_redis) {}

    bool to_redis() const noexcept { return to_redis_; }

    // The Kafka producer, connected on first use.
    kafka::Producer& producer();

    // Hands the batch's publishable rows to the broker. Redis acknowledges (or refuses) each
    // add at once; Kafka's acknowledgements are collected by settle().
    void publish(Flight& f);

    // Waits for the batch's acknowledgements (Kafka), renewing the lease meanwhile through
    // `renew_lease` (false: the lease is lost) so it can stay short however long the broker
    // takes, and sorts the rows into sent and failed. At the first row with a retriable
    // error the batch stops: that row and all after it (in this batch and the next) stay
    // pending and are published again, in order.
    void settle(Flight& f, const std::function<bool()>& renew_lease);

    // A batch in flight that will not be marked: its rows stay pending and are published
    // again. Waits briefly for its deliveries, so the producer is not left busy with them.
    void let_go(const Flight& f);

    // Drops the Kafka producer (after a fatal error): the next use creates a new one.
    void recreate() { producer_.reset(); }

    // Closes the producers.
    void close();

private:
    const OutboxConfig& config_;
    bool to_redis_;
    std::unique_ptr<kafka::Producer> producer_;
    std::unique_ptr<redis::StreamProducer> stream_producer_;  // redis:// brokers
};

}  // namespace postroom::outbox::detail
