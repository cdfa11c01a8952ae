#pragma once
// The idempotent consumer runtime: runs a handler for each event of the subscribed topics in
// a consumer group, with at-least-once delivery and exactly-once effects.
//
// For each event: a transaction of the idempotency store claims the event's key (scope =
// processor name); the handler runs with that transaction (SQL stores: its own writes join
// it); both commit together. A key already claimed is a duplicate and skipped. A failing
// handler is retried with backoff up to the policy's attempts; what still fails — or fails
// with a non-retryable error, or is not a decodable event, or is too large — goes to the
// dead-letter topic with the postroom-dlt-* headers. The source offset is committed only
// after the event is done (effect committed or dead letter acknowledged), never ahead.
//
// Events are handled in poll order, a poll batch in one store transaction (a savepoint per
// event): per-key (and per-partition) order holds. In-process retries block the processor;
// retry topics (retry_topic_delays) do not. If the store or the dead-letter topic
// cannot be written, the processor backs off and does not progress: nothing is lost, nothing
// spins. A dead letter always fits its topic (a value too large is cut, and the letter says
// so); a record that a topic refuses for a reason waiting does not mend (an invalid name, no
// authorisation) stops the processor after a few tries with an error that says so, the event
// left for redelivery.
//
// Thread-safety: run()/run_once()/close() belong to one thread; stop() and counters() may
// be called from any thread (stop() also from a signal handler's flag-setting code). The
// handler runs on the thread that calls run()/run_once(), or with concurrency > 1 on the
// processor's lane threads.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "postroom/event.hpp"
#include "postroom/message.hpp"
#include "postroom/runtime/retry.hpp"
#include "postroom/stores/store.hpp"
#include "postroom/transport.hpp"

namespace postroom::runtime {

// A handler's failure as the runtime records it (bindings translate their language's
// exceptions into this; plain C++ exceptions are recorded by type name).
class HandlerFailure : public std::runtime_error {
public:
    HandlerFailure(std::string type, const std::string& message, std::string stack, bool retryable)
        : std::runtime_error(message),
          type_(std::move(type)),
          stack_(std::move(stack)),
          retryable_(retryable) {}
    const std::string& type() const noexcept { return type_; }
    const std::string& stack() const noexcept { return stack_; }
    bool retryable() const noexcept { return retryable_; }

private:
    std::string type_, stack_;
    bool retryable_;
};

// Thrown by a handler to send the event straight to the dead-letter topic.
class NonRetryableError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// What a handler gets besides the event. Valid only during the handler call.
struct HandlerContext {
    const Message& message;
    int attempt;                       // 1 for the first
    stores::Transaction* transaction;  // the store's transaction (never null)
};

using Handler = std::function<void(const Event&, HandlerContext&)>;

// What a batch handler gets besides the events. Valid only during the handler call.
struct BatchHandlerContext {
    const std::vector<const Message*>& messages;  // the events' messages, in the same order
    int attempt;                                  // 1 for the first
    stores::Transaction* transaction;             // the store's transaction (never null)
};

// A batch handler gets the fresh events of a polled batch (duplicates left out) in one call,
// in order, in one store transaction: one call per batch instead of per event, so an effect
// can be written once for the batch (a bulk INSERT, one INCRBY). If it throws, nothing of the
// batch commits and the batch's events are handled one at a time — each a batch of one, with
// the retry policy and the dead-letter topic — so one poison event does not hold back the
// rest. That failed batch call does not count against the events' attempts.
using BatchHandler = std::function<void(const std::vector<const Event*>&, BatchHandlerContext&)>;
using LogSink = std::function<void(int level, const std::string& line)>;

// Stops a processor from dead-lettering everything when a downstream outage makes every event
// fail: once more than max_failure_ratio of the last `window` events (at least min_events)
// failed for good, the next failing event is held — the processor pauses for `pause`, then
// retries it — instead of being dead-lettered. Disabled when max_failure_ratio is 0.
struct FloodGuard {
    double max_failure_ratio = 0.0;
    std::size_t window = 20;
    std::size_t min_events = 10;
    std::chrono::milliseconds pause{10'000};
};

struct ProcessorConfig {
    std::string name;                        // required: the idempotency scope
    std::string broker_url = "embedded://";  // kafka://, embedded:// or redis://
    std::string group_id;                    // default: name
    std::vector<std::string> topics;         // required
    std::string dead_letter_topic;           // default: "<first topic>.dlq"
    RetryPolicy retry;                       // in-process (blocking) retries
    // Non-blocking retries: when an event's in-process attempts fail (and the error is
    // retryable) it goes to "<topic>.retry.1", to be tried again retry_topic_delays[0] later,
    // then to ".retry.2" after [1], and so on; after the last level, to the dead-letter topic.
    // Its source partition keeps flowing meanwhile: per-key order is given up for the events
    // that take this path. A retry topic's partition waits (paused, not polled) until its head
    // event is due. The retry topics must exist; the processor consumes them with its topics.
    // Empty (the default): in-process retries only.
    std::vector<std::chrono::milliseconds> retry_topic_delays;
    std::size_t max_payload_bytes = 1 << 20;
    // Idempotency key: the CloudEvent id, unless key_header names a header to use, or
    // key_function computes it.
    std::string key_header;
    std::function<std::string(const Event&, const Message&)> key_function;
    std::shared_ptr<stores::IdempotencyStore> store;  // default: a MemoryStore
    FloodGuard flood_guard;
    std::size_t batch_size = 500;
    // Partitions handled at once. 1: the handler runs on the thread that calls run_once(),
    // one partition's events after another's. N > 1: N threads ("lanes"), each owning a share
    // of the partitions (in order within each), so one partition's slow handler or retries do
    // not hold up the others. The handler must then be thread-safe. A lane with more than
    // lane_queue_messages or lane_queue_bytes waiting pauses its partitions until it is down
    // to half.
    std::size_t concurrency = 1;
    std::size_t lane_queue_messages = 20'000;
    std::size_t lane_queue_bytes = 64 << 20;
    std::chrono::milliseconds commit_interval{1000};
    // Dedupe marks older than this are purged from the store (at start, then every
    // purge_interval); 0 = never (the store's own retention, if any, applies). The retention
    // is the replay horizon: an event redelivered after its mark is gone is applied again.
    std::chrono::seconds retention{0};
    std::chrono::seconds purge_interval{600};
    // Backoff cap while the store or the dead-letter topic cannot be written.
    std::chrono::milliseconds blocked_backoff_max{30'000};
    // Kafka: librdkafka properties. Redis Streams: consumer (a fixed consumer name),
    // start_id, claim_min_idle_ms, claim_interval_ms; producer: maxlen.
    transport::Properties consumer_properties;
    transport::Properties producer_properties;
    // Called at least every 100 ms while the processor waits (polls, backoff sleeps); may
    // call stop(). Bindings check for signals here.
    std::function<void()> on_wait;
    LogSink log;  // default: one structured line per event on stderr for retries/dead letters
};

struct Counters {
    int64_t processed = 0;          // effects committed
    int64_t duplicates = 0;         // skipped: already applied
    int64_t retried = 0;            // retry attempts made
    int64_t failed_attempts = 0;    // handler calls that failed
    int64_t dead_lettered = 0;      // written to the dead-letter topic and acknowledged
    int64_t retry_topic_sends = 0;  // written to a retry topic and acknowledged
    int64_t in_flight = 0;          // claimed, not finished: being handled, or committing
    int64_t blocked_waits = 0;      // backoffs because the store or dead-letter topic failed
    int64_t flood_pauses = 0;       // pauses of the flood guard
    int64_t purged_marks = 0;       // dedupe marks removed by the retention
    int64_t lane_pauses = 0;        // partitions paused because their lane's queue was full
    std::map<TopicPartition, int64_t> lag;  // per assigned partition: high watermark - position
};

class Processor {
public:
    Processor(ProcessorConfig config, Handler handler);
    Processor(ProcessorConfig config, BatchHandler handler);
    ~Processor();  // close()
    Processor(Processor&&) noexcept;
    Processor& operator=(Processor&&) noexcept;

    // Polls once (waiting up to `timeout`) and handles what arrived; returns how many
    // messages were finished.
    std::size_t run_once(std::chrono::milliseconds timeout);
    // run_once() until stop(); throws what stopped it, if a failure did.
    void run();
    // Throws the error that stopped the processor, if one did: a dead letter or retry record
    // that its topic keeps refusing (run_once() throws it too, and again on every call).
    void throw_if_failed() const;
    void stop() noexcept;
    bool stopping() const noexcept;
    // Commits what is done and leaves the group. Idempotent.
    void close();

    Counters counters() const;
    const ProcessorConfig& config() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace postroom::runtime
