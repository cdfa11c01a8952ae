#include "failure_routing.hpp"

#include <string>

#include "postroom/event.hpp"

namespace postroom::runtime::detail {

double FailureRouting::unit_random() {
    std::lock_guard lock(rng_mutex_);
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
}

void FailureRouting::record_outcome(bool failed) {
    if (state_.config.flood_guard.max_failure_ratio <= 0.0) return;
    std::lock_guard lock(outcomes_mutex_);
    outcomes_.push_back(failed);
    while (outcomes_.size() > state_.config.flood_guard.window) outcomes_.pop_front();
}

bool FailureRouting::flood_tripped() const {
    const auto& g = state_.config.flood_guard;
    if (g.max_failure_ratio <= 0.0) return false;
    std::lock_guard lock(outcomes_mutex_);
    std::size_t failed = 1, total = 1;  // counting the event at hand
    for (auto it = outcomes_.rbegin(); it != outcomes_.rend() && total < g.window; ++it, ++total)
        failed += *it ? 1 : 0;
    if (total < g.min_events) return false;
    return static_cast<double>(failed) / static_cast<double>(total) > g.max_failure_ratio;
}

std::optional<Outcome> FailureRouting::after_failure(const Message& m, const Origin& origin,
                                                     Failure& failure, int& attempt,
                                                     bool retryable) {
    const auto& config = state_.config;
    failure.attempts = origin.attempts + attempt;
    failure.last_failure = now_rfc3339();
    if (attempt == 1)
        failure.first_failure =
            origin.first_failure.empty() ? failure.last_failure : origin.first_failure;
    if (!retryable || attempt >= config.retry.max_attempts) {
        if (flood_tripped()) {
            // Most recent events failed too: more likely a downstream outage than
            // poison. Hold this event instead of dead-lettering everything.
            state_.log(3, "flood-guard-pause", m,
                       "failure ratio over the last " + std::to_string(config.flood_guard.window) +
                           " events exceeds " +
                           std::to_string(config.flood_guard.max_failure_ratio) + "; pausing " +
                           std::to_string(config.flood_guard.pause.count()) +
                           " ms, then retrying instead of dead-lettering");
            state_.count([](Counters& c) { ++c.flood_pauses; });
            if (!state_.wait_for(config.flood_guard.pause)) return Outcome::abandoned;
            attempt = 1;
            return std::nullopt;
        }
        record_outcome(true);
        if (retryable && origin.level < static_cast<int>(config.retry_topic_delays.size()))
            return forwarder_.schedule_retry(m, failure, origin.level + 1);
        failure.reason =
            retryable ? DeadLetterReason::retries_exhausted : DeadLetterReason::non_retryable;
        return forwarder_.dead_letter(m, failure);
    }
    auto delay = config.retry.delay_before(attempt + 1, unit_random());
    state_.log(4, "retry", m,
               "attempt " + std::to_string(attempt) + " failed: " + failure.error_type + ": " +
                   failure.error_message + "; retrying in " + std::to_string(delay.count()) +
                   " ms");
    state_.count([](Counters& c) { ++c.retried; });
    if (!state_.wait_for(delay)) return Outcome::abandoned;
    ++attempt;
    return std::nullopt;
}

}  // namespace postroom::runtime::detail
