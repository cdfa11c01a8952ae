// The consumer runtime's processor: checks the configuration, opens the consumer, and runs the
// poll loop (run_once()). Its parts, each in its own file:
//   processor_state.hpp  what the parts share: configuration, consumer, counters, waits
//   forwarder.*          dead letters and retry records (the producer, topic limits, refusals)
//   failure_routing.*    where a failed event goes: backoff, retry topic, dead letter, flood guard
//   segment.*            the segment transaction: a polled batch in store transactions
//   lanes.*              concurrency > 1: the lane threads, their queues and pauses
#include "postroom/runtime/processor.hpp"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "../detail/structured_log.hpp"
#include "crash_points.hpp"
#include "failure_routing.hpp"
#include "forwarder.hpp"
#include "lanes.hpp"
#include "postroom/error.hpp"
#include "postroom/runtime/dead_letter.hpp"
#include "postroom/transport.hpp"
#include "processor_state.hpp"
#include "segment.hpp"

namespace postroom::runtime {

using namespace std::chrono;
using Clock = steady_clock;

namespace {

using postroom::detail::default_log;
using postroom::detail::escaped;

}  // namespace

struct Processor::Impl : detail::ProcessorState {
    Impl(Handler handler, BatchHandler batch_handler)
        : segments(*this, routing, std::move(handler), std::move(batch_handler)) {}

    detail::Forwarder forwarder{*this};  // dead letters and retries
    detail::FailureRouting routing{*this, forwarder};
    detail::SegmentRunner segments;
    detail::Lanes lanes{*this, [this](const std::vector<const Message*>& batch) {
                            return segments.handle_batch(batch);
                        }};
    bool closed = false;
    Clock::time_point last_commit = Clock::now();

    // Checks and completes `config`, opens the consumer and subscribes.
    void open(ProcessorConfig given);

    // Retry topics: partitions whose head event is not due yet, paused until it is.
    std::map<TopicPartition, int64_t> waiting;  // partition -> due, ms since the epoch
    std::set<std::string> retry_topics;

    static int64_t epoch_ms() {
        return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
    }

    // The messages of `batch` that may be handled now. A retry-topic event that is not due
    // pauses its partition and rewinds it to that event; the partition's later messages in
    // this batch are left for then.
    std::vector<const Message*> due_now(const std::vector<Message>& batch) {
        std::vector<const Message*> out;
        out.reserve(batch.size());
        std::set<TopicPartition> held;
        const int64_t now = epoch_ms();
        for (const auto& m : batch) {
            auto tp = m.topic_partition();
            if (held.count(tp)) continue;
            if (!retry_topics.empty() && retry_topics.count(m.topic)) {
                const int64_t due = origin_of(m).due_ms;
                if (due > now) {
                    consumer->pause({tp});
                    consumer->redeliver_from(m);
                    waiting[tp] = due;
                    held.insert(tp);
                    continue;
                }
            }
            out.push_back(&m);
        }
        return out;
    }

    void resume_due() {
        const int64_t now = epoch_ms();
        std::vector<TopicPartition> due;
        for (auto it = waiting.begin(); it != waiting.end();) {
            if (it->second <= now) {
                if (!lanes.holds_back(it->first)) due.push_back(it->first);
                it = waiting.erase(it);
            } else {
                ++it;
            }
        }
        consumer->resume(due);
    }

    std::optional<Clock::time_point> last_purge;

    // Applies the retention to the store; a store failure here is logged, not fatal (the
    // next interval tries again).
    void purge_if_due() {
        if (config.retention.count() <= 0) return;
        if (last_purge && Clock::now() - *last_purge < config.purge_interval) return;
        last_purge = Clock::now();
        try {
            auto n = static_cast<int64_t>(config.store->purge_older_than(config.retention));
            count([n](Counters& c) { c.purged_marks += n; });
        } catch (const Error& e) {
            (config.log ? config.log : default_log)(
                3, "postroom level=error processor=\"" + escaped(config.name) +
                       "\" event=\"purge-failed\" detail=\"" + escaped(e.what()) + "\"");
        }
    }

    void commit_if_due(bool force) {
        if (!force && Clock::now() - last_commit < config.commit_interval) return;
        if (consumer->commit() > 0) detail::crash_point("after-offset-commit");
        last_commit = Clock::now();
    }
};

void Processor::Impl::open(ProcessorConfig given) {
    auto& c = given;
    if (c.name.empty())
        throw ConfigurationError("processor name is required (the idempotency scope)");
    if (c.topics.empty()) throw ConfigurationError("processor needs at least one topic");
    if (c.batch_size == 0) throw ConfigurationError("processor batch_size must be positive");
    if (c.concurrency == 0 || c.concurrency > 256)
        throw ConfigurationError("processor concurrency must be between 1 and 256");
    if (c.lane_queue_messages < 2 || c.lane_queue_bytes < 2)
        throw ConfigurationError("lane_queue_messages and lane_queue_bytes must be at least 2");
    c.retry.validate();
    if (c.flood_guard.max_failure_ratio < 0.0 || c.flood_guard.max_failure_ratio >= 1.0)
        throw ConfigurationError("flood_guard max_failure_ratio must be in [0, 1) (0 = off)");
    if (c.flood_guard.max_failure_ratio > 0.0 &&
        (c.flood_guard.window == 0 || c.flood_guard.min_events > c.flood_guard.window))
        throw ConfigurationError("flood_guard needs 0 < min_events <= window");
    if (c.group_id.empty()) c.group_id = c.name;
    if (c.dead_letter_topic.empty()) c.dead_letter_topic = c.topics.front() + ".dlq";
    for (const auto& t : c.topics)
        if (t == c.dead_letter_topic)
            throw ConfigurationError("the dead-letter topic '" + t +
                                     "' must not be one of the processor's own topics");
    for (auto delay : c.retry_topic_delays)
        if (delay.count() <= 0) throw ConfigurationError("retry_topic_delays must all be positive");
    for (const auto& t : c.topics)
        for (const auto& u : c.topics)
            if (u.rfind(t + ".retry.", 0) == 0)
                throw ConfigurationError("topic '" + u + "' is a retry topic of '" + t +
                                         "': subscribe to '" + t +
                                         "' only; its retry topics are consumed with it");
    if (!c.store) c.store = std::make_shared<stores::MemoryStore>();
    // A name that can never be a topic is a configuration error, not "unknown topic".
    for (const auto& t : c.topics) {
        transport::check_topic_name(c.broker_url, t);
        for (std::size_t level = 1; level <= c.retry_topic_delays.size(); ++level)
            transport::check_topic_name(c.broker_url, retry_topic_name(t, static_cast<int>(level)));
    }
    transport::check_topic_name(c.broker_url, c.dead_letter_topic);
    config = std::move(given);

    transport::ConsumerOptions co;
    co.broker_url = config.broker_url;
    co.group_id = config.group_id;
    co.client_id = config.name;
    co.properties = config.consumer_properties;
    co.log = config.log;
    consumer = transport::open_consumer(co);
    auto subscribed = config.topics;
    for (const auto& t : config.topics)
        for (std::size_t level = 1; level <= config.retry_topic_delays.size(); ++level) {
            subscribed.push_back(retry_topic_name(t, static_cast<int>(level)));
            retry_topics.insert(subscribed.back());
        }
    transport::RebalanceListener listener;
    auto* impl = this;
    // A partition comes back unpaused: whatever waited on it is read again and re-paused
    // if still not due.
    listener.on_assigned = [impl](const std::vector<TopicPartition>& tps) {
        for (const auto& tp : tps) impl->waiting.erase(tp);
        if (!impl->retry_topics.empty() || !impl->lanes.empty()) impl->consumer->resume(tps);
    };
    listener.on_revoked = [impl](const std::vector<TopicPartition>& tps) {
        for (const auto& tp : tps) impl->waiting.erase(tp);
        // Both before the revoked partitions' offsets are committed.
        impl->segments.settle(false, tps);
        impl->lanes.release_partitions(tps);
        impl->segments.drop_ahead(tps);  // their next owner reads them
    };
    listener.on_lost = listener.on_revoked;
    consumer->subscribe(subscribed, std::move(listener));
    if (config.concurrency > 1) lanes.start(config.concurrency);
}

Processor::~Processor() {
    if (impl_) {
        try {
            close();
        } catch (...) {
            // Destructors do not throw; close() explicitly to see errors.
        }
    }
}

Processor::Processor(ProcessorConfig config, Handler handler) {
    if (!handler) throw ConfigurationError("processor needs a handler");
    impl_ = std::make_unique<Impl>(std::move(handler), BatchHandler{});
    impl_->open(std::move(config));
}

Processor::Processor(ProcessorConfig config, BatchHandler handler) {
    if (!handler) throw ConfigurationError("processor needs a handler");
    impl_ = std::make_unique<Impl>(Handler{}, std::move(handler));
    impl_->open(std::move(config));
}

Processor::Processor(Processor&&) noexcept = default;
Processor& Processor::operator=(Processor&&) noexcept = default;

std::size_t Processor::run_once(milliseconds timeout) {
    auto& impl = *impl_;
    if (impl.closed) throw UsageError("the processor is closed");
    if (impl.stop_requested.load()) {
        const auto finished = impl.segments.settle(false);
        impl.forwarder.rethrow_fatal();
        return finished;
    }
    if (!impl.waiting.empty()) impl.resume_due();
    if (impl.lanes.holding_back()) {
        // Lanes are draining: look again soon rather than sleeping on paused partitions.
        impl.lanes.resume_drained(impl.waiting);
        if (impl.lanes.holding_back()) timeout = std::min(timeout, milliseconds(5));
    }
    const auto deadline = Clock::now() + timeout;
    const bool lanes_stuck = impl.lanes.fed() && !impl.lanes.wait_for_room(timeout);
    auto left = [&] {
        return std::max(milliseconds(0),
                        std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
    };
    // A commit left in the background by the last batch: poll what is there without waiting,
    // then settle it, so that its outcome does not wait for new messages (if it finished
    // events and nothing new came, run_once returns at once).
    const bool settling = impl.segments.deferred();
    std::vector<Message> batch;
    if (auto ahead = impl.segments.take_ahead()) {
        batch = std::move(*ahead);
    } else {
        batch =
            impl.consumer->poll_batch(impl.config.batch_size, settling ? milliseconds(0) : left());
    }
    // Stopping leaves the unfinished rest of the batch uncommitted: the group redelivers it.
    std::size_t finished = impl.segments.settle(true);
    if (settling && batch.empty() && finished == 0 && !impl.stop_requested.load())
        batch = impl.consumer->poll_batch(impl.config.batch_size, left());
    if (impl.lanes.empty()) {
        // One commit in the background at a time (one still there failed while stopping).
        const bool overlap = !impl.segments.deferred();
        finished += impl.segments.handle_batch(impl.due_now(batch), overlap);
        if (overlap && impl.segments.deferred()) impl.segments.keep_polled(batch);
    } else {
        impl.lanes.dispatch(batch, impl.due_now(batch), lanes_stuck);
        finished += impl.lanes.take_finished();
    }
    if (impl.config.on_wait && batch.empty()) impl.config.on_wait();
    impl.commit_if_due(impl.stop_requested.load());
    impl.purge_if_due();
    impl.forwarder.rethrow_fatal();
    return finished;
}

void Processor::run() {
    while (!impl_->stop_requested.load()) run_once(milliseconds(100));
    throw_if_failed();
}

void Processor::throw_if_failed() const {
    impl_->forwarder.rethrow_fatal();
}

void Processor::stop() noexcept {
    impl_->stop_requested.store(true);
}

bool Processor::stopping() const noexcept {
    return impl_->stop_requested.load();
}

void Processor::close() {
    if (!impl_ || impl_->closed) return;
    impl_->closed = true;
    impl_->stop_requested.store(true);
    impl_->segments.settle(false);
    impl_->lanes.stop();       // they finish the event in hand; the rest is redelivered
    impl_->consumer->close();  // commits what is done, leaves the group
    impl_->forwarder.close();
}

Counters Processor::counters() const {
    Counters c;
    {
        std::lock_guard lock(impl_->counters_mutex);
        c = impl_->counts;
    }
    if (!impl_->closed) c.lag = impl_->consumer->lag();
    return c;
}

const ProcessorConfig& Processor::config() const noexcept {
    return impl_->config;
}

}  // namespace postroom::runtime
