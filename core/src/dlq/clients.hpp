#pragma once
// The clients a DeadLetterQueue owns, created when first needed: an admin client (watermarks,
// topics), a producer (replays and the ledger), and on Redis the stream admin, a stream
// producer and a connection for the ledger hash. The scan, the ledger and the replay work
// through them; queue.cpp creates them.
//
// Thread-safety: one thread at a time, except that the scan's reader thread uses the admin
// client, which scan_on_reader_thread creates before it starts that thread.

#include <memory>
#include <string>
#include <vector>

#include "postroom/dlq/queue.hpp"
#include "postroom/kafka/admin.hpp"
#include "postroom/kafka/producer.hpp"
#include "postroom/redis/streams.hpp"

namespace postroom::redis::detail {
class Connection;
}

namespace postroom::dlq::detail {

struct Clients {
    explicit Clients(QueueConfig config);
    ~Clients();
    Clients(const Clients&) = delete;
    Clients& operator=(const Clients&) = delete;

    QueueConfig config;
    bool redis = false;
    std::unique_ptr<kafka::Admin> admin;
    std::unique_ptr<kafka::Producer> producer;
    std::unique_ptr<postroom::redis::StreamAdmin> streams;
    std::unique_ptr<postroom::redis::StreamProducer> stream_producer;
    std::unique_ptr<postroom::redis::detail::Connection> connection;  // the ledger hash

    kafka::Admin& the_admin();
    kafka::Producer& the_producer();
    postroom::redis::StreamProducer& the_stream_producer();

    [[noreturn]] void missing() const;

    // Sends `batch`; returns, in order, whether each was acknowledged. Throws when none can
    // be known (a lost connection).
    std::vector<std::string> send(std::vector<OutgoingMessage> batch);
};

}  // namespace postroom::dlq::detail
