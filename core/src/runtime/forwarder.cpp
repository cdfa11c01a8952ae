#include "forwarder.hpp"

#include <chrono>

#include "../detail/excerpt.hpp"
#include "crash_points.hpp"
#include "postroom/error.hpp"

namespace postroom::runtime::detail {

using namespace std::chrono;

namespace {

using postroom::detail::excerpt;

}  // namespace

// The forwarder (made on first use), under forwarder_mutex_.
transport::Producer& Forwarder::the_forwarder() {
    if (!forwarder_) {
        const auto& config = state_.config;
        transport::ProducerOptions po;
        po.broker_url = config.broker_url;
        po.client_id = config.name + "-forwarder";
        po.properties = config.producer_properties;
        // Records as large as the topics take: the topic's limit is the one that counts.
        po.max_record_bytes = forwarder_max_record_bytes;
        forwarder_ = transport::open_producer(po);
    }
    return *forwarder_;
}

// What `topic` takes, under forwarder_mutex_; throws when the broker cannot be asked.
const transport::TopicLimits& Forwarder::limits_of(const std::string& topic, bool again) {
    auto it = limits_.find(topic);
    if (it == limits_.end() || again || !it->second.exists)
        it = limits_.insert_or_assign(topic, the_forwarder().limits(topic)).first;
    return it->second;
}

void Forwarder::stop_with(std::exception_ptr error) {
    {
        std::lock_guard lock(fatal_mutex_);
        if (!fatal_) fatal_ = std::move(error);
    }
    state_.stop_requested.store(true);
}

void Forwarder::rethrow_fatal() {
    std::exception_ptr error;
    {
        std::lock_guard lock(fatal_mutex_);
        error = fatal_;
    }
    if (error) std::rethrow_exception(error);
}

void Forwarder::close() {
    std::lock_guard lock(forwarder_mutex_);
    if (forwarder_) forwarder_->close();
}

// Writes the record `make(limit)` builds for `topic` (a dead letter or a retry; `limit`:
// the largest record the topic takes, if known) and waits for the broker's
// acknowledgement. While the topic cannot be written for a passing reason (the broker is
// away, the topic does not exist yet) the processor backs off and does not progress. A
// refusal that waiting does not mend ends the processor after max_refusals tries, with the
// event left unfinished (redelivered after a restart). `make` returns nullopt when no
// record fits: then nothing is written and forward returns nullopt.
std::optional<Outcome> Forwarder::forward(
    const Message& m, const std::string& topic, std::string_view blocked_what,
    const std::function<std::optional<OutgoingMessage>(std::optional<std::size_t>)>& make,
    const std::function<void(const OutgoingMessage&)>& on_written) {
    int refusals = 0;
    bool ask_again = false;
    for (int round = 0;; ++round) {
        std::string why;
        try {
            std::lock_guard lock(forwarder_mutex_);
            const auto& limit = limits_of(topic, ask_again);
            ask_again = false;
            auto record = make(limit.max_record_bytes);
            if (!record) return std::nullopt;
            if (!limit.exists)
                throw UsageError("topic '" + topic +
                                 "' does not exist; create it (postroom does not rely on "
                                 "topic auto-creation)");
            the_forwarder().send(*record, seconds(30));
            on_written(*record);
            return Outcome::done;
        } catch (const Error& e) {
            why = e.what();
            // The topic exists and still refuses the record for good (too large for it,
            // an invalid name, no authorisation): a few more tries, then stop.
            // A fatal client error is mended by a new producer, unless it comes back.
            bool missing = false;
            {
                std::lock_guard lock(forwarder_mutex_);
                auto it = limits_.find(topic);
                missing = it != limits_.end() && !it->second.exists;
                if (e.kind() == ErrorKind::fatal_client) {
                    forwarder_.reset();  // recreate the producer on the next round
                    limits_.clear();
                }
            }
            if (e.retriable() == Retriable::no && !missing) {
                ask_again = true;  // the topic's limit may have changed
                if (++refusals >= max_refusals) {
                    state_.log(3, blocked_what, m,
                               why + "; refused " + std::to_string(refusals) +
                                   " times: the processor stops");
                    stop_with(std::make_exception_ptr(Error(
                        e.kind(), e.retriable(),
                        "the processor '" + state_.config.name + "' stopped: the record for " +
                            m.topic + "[" + std::to_string(m.partition) + "] at " + m.position() +
                            " could not be written to '" + topic + "' (" +
                            std::to_string(refusals) + " tries): " + why +
                            ". Nothing was committed past it: fix the topic and start the "
                            "processor again",
                        e.code())));
                    return Outcome::abandoned;
                }
            } else {
                why += "; the processor waits until the topic '" + topic + "' can be written";
            }
        }
        state_.log(3, blocked_what, m, why);
        state_.count([](Counters& c) { ++c.blocked_waits; });
        if (!state_.wait_for(state_.blocked_backoff(round))) return Outcome::abandoned;
    }
}

Outcome Forwarder::dead_letter(const Message& m, const Failure& failure) {
    const auto& config = state_.config;
    const auto& topic = config.dead_letter_topic;
    auto written = forward(
        m, topic, "dead-letter-blocked",
        [&](std::optional<std::size_t> limit) -> std::optional<OutgoingMessage> {
            auto record = make_dead_letter(m, failure, topic, config.name, config.group_id);
            if (limit && !fit_dead_letter(record, *limit)) {
                stop_with(std::make_exception_ptr(ConfigurationError(
                    "the processor '" + config.name + "' stopped: the dead letter of " + m.topic +
                    "[" + std::to_string(m.partition) + "] at " + m.position() +
                    " does not fit the dead-letter topic '" + topic + "' even without its " +
                    "value (" + std::to_string(record_bytes(record)) + " bytes of key and " +
                    "headers, the topic takes " + std::to_string(*limit) +
                    "); raise the topic's max.message.bytes. Nothing was committed past it")));
                return std::nullopt;
            }
            return record;
        },
        [&](const OutgoingMessage& record) {
            state_.count([](Counters& c) { ++c.dead_lettered; });
            detail::crash_point("after-dead-letter");
            std::string cut;
            if (find_header(record.headers, dlt::value_truncated))
                cut = " (value cut to " + std::to_string(record.value->size()) + " of " +
                      std::to_string(m.value ? m.value->size() : 0) + " bytes to fit the topic)";
            state_.log(4, "dead-lettered", m,
                       std::string(to_string(failure.reason)) + " after " +
                           std::to_string(failure.attempts) +
                           " attempt(s): " + excerpt(failure.error_type, 200) + ": " +
                           excerpt(failure.error_message, 1000) + " -> " + topic + cut);
        });
    return written.value_or(Outcome::abandoned);
}

Outcome Forwarder::schedule_retry(const Message& m, const Failure& failure, int level) {
    const auto delay = state_.config.retry_topic_delays.at(static_cast<std::size_t>(level - 1));
    const int64_t due =
        duration_cast<milliseconds>(system_clock::now().time_since_epoch() + delay).count();
    const auto topic = retry_topic_name(origin_of(m).topic, level);
    std::size_t too_large = 0, limit_bytes = 0;
    auto written = forward(
        m, topic, "retry-topic-blocked",
        [&](std::optional<std::size_t> limit) -> std::optional<OutgoingMessage> {
            auto record = make_retry(m, failure, level, due);
            if (limit && record_bytes(record) > *limit) {
                too_large = record_bytes(record);
                limit_bytes = *limit;
                return std::nullopt;
            }
            return record;
        },
        [&](const OutgoingMessage& record) {
            state_.count([](Counters& c) { ++c.retry_topic_sends; });
            state_.log(4, "retry-scheduled", m,
                       "attempt " + std::to_string(failure.attempts) +
                           " failed: " + excerpt(failure.error_type, 200) + ": " +
                           excerpt(failure.error_message, 1000) + "; retrying from " +
                           record.topic + " in " + std::to_string(delay.count()) + " ms");
        });
    if (written) return *written;
    if (state_.stop_requested.load()) return Outcome::abandoned;
    state_.log(4, "retry-topic-too-small", m,
               "the retry record of " + std::to_string(too_large) + " bytes exceeds what '" +
                   topic + "' takes (" + std::to_string(limit_bytes) +
                   " bytes): dead-lettered instead of retried");
    Failure instead = failure;
    instead.reason = DeadLetterReason::too_large_for_retry_topic;
    return dead_letter(m, instead);
}

}  // namespace postroom::runtime::detail
