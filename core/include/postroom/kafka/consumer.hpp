#pragma once
// Kafka consumer in a consumer group. Offsets are committed only for what the application
// marked done: per partition, the commit stops at the lowest delivered offset that is not
// done yet, so a commit never runs ahead of unfinished work, even when messages are
// finished out of order.
//
// Thread-safety: poll(), poll_batch(), poll_views(), subscribe(), seek(), commit() and close()
// belong to one thread at a time (the polling thread). mark_done() may be called from any
// thread. Rebalance callbacks run on the polling thread, inside the polls or close(); an
// exception they throw is rethrown from that call once librdkafka has returned.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "postroom/kafka/config.hpp"
#include "postroom/message.hpp"
#include "postroom/transport.hpp"

namespace postroom::kafka {

using RebalanceListener = transport::RebalanceListener;

class Consumer {
public:
    explicit Consumer(ConsumerConfig config);
    ~Consumer();  // close()
    Consumer(Consumer&&) noexcept;
    Consumer& operator=(Consumer&&) noexcept;

    void subscribe(const std::vector<std::string>& topics, RebalanceListener listener = {});
    // Manual assignment instead of group subscription (offset -1000 = the committed one).
    void assign(const std::vector<TopicPartitionOffset>& partitions);

    // nullopt when nothing arrived within the timeout.
    std::optional<Message> poll(std::chrono::milliseconds timeout);
    // Up to `max_messages`, waiting at most `timeout` for the first ones.
    std::vector<Message> poll_batch(std::size_t max_messages, std::chrono::milliseconds timeout);
    // poll_batch as views: the batch holds every record's data in one block. It returns as
    // soon as the first record arrives, with what is queued by then (up to `max_messages`),
    // instead of waiting for a full batch.
    MessageBatch poll_views(std::size_t max_messages, std::chrono::milliseconds timeout);

    // Marks a delivered message finished; commit() will include it.
    void mark_done(const Message& message);
    void mark_done(const TopicPartition& partition, int64_t offset);

    // Synchronously commits, per partition, the offset after the contiguous done prefix.
    // Returns what was committed (empty when nothing new was done).
    std::vector<TopicPartitionOffset> commit();
    // Offsets committed for the group on the broker, for the given partitions (-1001 =
    // none yet).
    std::vector<TopicPartitionOffset> committed(const std::vector<TopicPartition>& partitions,
                                                std::chrono::milliseconds timeout);

    // Moves the next fetch position. Undone messages at or after `offset` are forgotten (they
    // are delivered again); those before it stay undone, so commit() never passes them. A
    // logical offset (beginning, end) forgets every undone message of the partition.
    void seek(const TopicPartition& partition, int64_t offset, std::chrono::milliseconds timeout);

    // Stops fetching from `partitions` (polls return nothing of them) until resume(); their
    // messages already delivered stay undone until marked.
    void pause(const std::vector<TopicPartition>& partitions);
    void resume(const std::vector<TopicPartition>& partitions);

    std::vector<TopicPartition> assignment() const;
    // Per assigned partition: messages not yet fetched (high watermark - position), from
    // the watermarks librdkafka last saw; no network round trip. -1 when unknown.
    std::map<TopicPartition, int64_t> lag() const;
    // Delivered but not yet marked done, over all partitions.
    std::size_t outstanding() const;

    // Commits what is done, leaves the group and releases the client. Idempotent.
    void close();
    bool closed() const noexcept;

    const ConsumerConfig& config() const noexcept;

    static constexpr int64_t offset_stored = -1000;   // RD_KAFKA_OFFSET_STORED
    static constexpr int64_t offset_invalid = -1001;  // RD_KAFKA_OFFSET_INVALID
    static constexpr int64_t offset_beginning = -2;
    static constexpr int64_t offset_end = -1;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace postroom::kafka
