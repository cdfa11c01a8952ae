#pragma once
// What a broker said about messages sent to it, the same for every transport: one
// DeliveryReport per message, and BatchDelivery, the outcome of a batch as the reports come in.
//
// Thread-safety: a DeliveryReport is a value. A BatchDelivery is filled in by its transport
// (one thread at a time) and may be read from any thread; pending(), failed() and done() are
// atomic, and a report may be read once pending() no longer counts it.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "postroom/error.hpp"
#include "postroom/message.hpp"

namespace postroom {

enum class Persistence {
    not_persisted,       // certainly not written: safe to retry without a duplicate
    possibly_persisted,  // outcome unknown (timeout, lost connection): a retry may duplicate
    persisted,           // acknowledged by the broker
};

// Why a message was not delivered. Each transport says it in its own terms (Kafka: a broker
// or client error code; Redis: the server's reply).
class DeliveryFailure {
public:
    virtual ~DeliveryFailure() = default;
    // Human-readable, with what to do when there is something to do.
    virtual std::string message() const = 0;
    virtual Retriable retriable() const noexcept = 0;
    // The producer cannot go on after this: close it and create a new one.
    virtual bool fatal() const noexcept { return false; }
    // Throws the postroom error this failure stands for, its message starting with `context`.
    [[noreturn]] virtual void raise(const std::string& context) const = 0;
};

// A failure known only by its text (a refusal that waiting does not mend): raises a
// TransportError, not retriable.
std::shared_ptr<const DeliveryFailure> refusal(std::string text);

struct DeliveryReport {
    int32_t partition = -1;
    int64_t offset = -1;
    std::string id;  // Redis Streams: the entry id ("" on Kafka)
    Persistence persistence = Persistence::not_persisted;
    // The transport's own code for the failure (Kafka: rd_kafka_resp_err_t), 0 when delivered
    // or when the transport has no codes.
    int error_code = 0;
    std::shared_ptr<const DeliveryFailure> failure;  // null: delivered

    bool ok() const noexcept { return !failure; }
    // Human-readable error text ("" when ok).
    std::string error_message() const { return failure ? failure->message() : std::string(); }
    Retriable retriable() const noexcept { return failure ? failure->retriable() : Retriable::no; }
    bool fatal() const noexcept { return failure && failure->fatal(); }
    // Throws the postroom error this report stands for; no-op when ok.
    void raise(std::string_view topic) const;
};

// The outcome of a batch, in the order the messages were given.
class BatchDelivery {
public:
    std::size_t size() const noexcept { return reports_.size(); }
    std::size_t pending() const noexcept { return pending_.load(std::memory_order_acquire); }
    bool done() const noexcept { return pending() == 0; }
    std::size_t failed() const noexcept { return failed_.load(std::memory_order_acquire); }
    const std::vector<DeliveryReport>& reports() const noexcept { return reports_; }
    // Empty for a batch queued from views (they were copied as they were queued).
    const std::vector<OutgoingMessage>& messages() const noexcept { return messages_; }
    // Throws the first failure as a postroom error, mentioning how many failed.
    void raise_for_failures() const;

    // A batch whose reports are all known already (transports that answer synchronously).
    static std::shared_ptr<BatchDelivery> completed(std::vector<OutgoingMessage> messages,
                                                    std::vector<DeliveryReport> reports);
    // A batch whose transport gives each message's report later, once, with report(). The
    // messages stay in the batch until then (a transport may point into them).
    static std::shared_ptr<BatchDelivery> awaiting(std::vector<OutgoingMessage> messages);
    // The same for `count` messages the transport copied as it queued them.
    static std::shared_ptr<BatchDelivery> awaiting(std::size_t count);
    // The transport's side: message `index` was delivered or failed.
    void report(std::size_t index, DeliveryReport report);

    BatchDelivery(const BatchDelivery&) = delete;
    BatchDelivery& operator=(const BatchDelivery&) = delete;

private:
    BatchDelivery() = default;
    std::vector<OutgoingMessage> messages_;
    std::vector<DeliveryReport> reports_;
    std::atomic<std::size_t> pending_{0};
    std::atomic<std::size_t> failed_{0};
};

}  // namespace postroom
