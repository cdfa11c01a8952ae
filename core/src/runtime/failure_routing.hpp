#pragma once
// Where a failed event goes (internal): after an attempt fails, the failure routing decides
// between another attempt after a backoff, the next retry topic, the dead-letter topic, and
// — when most recent events failed too — a pause of the flood guard. It keeps the recent
// outcomes the flood guard judges by.
//
// Thread-safety: any thread (the polling thread, the lanes).

#include <deque>
#include <mutex>
#include <optional>
#include <random>

#include "forwarder.hpp"
#include "postroom/message.hpp"
#include "postroom/runtime/dead_letter.hpp"
#include "processor_state.hpp"

namespace postroom::runtime::detail {

class FailureRouting {
public:
    FailureRouting(ProcessorState& state, Forwarder& forwarder)
        : state_(state), forwarder_(forwarder) {}

    // What happens after attempt `attempt` of `m` (first consumed as `origin`) failed: a dead
    // letter (or a flood-guard pause) when it may not be retried, else a backoff. Returns the
    // outcome when the event is finished (or abandoned); nullopt when the next attempt is due.
    std::optional<Outcome> after_failure(const Message& m, const Origin& origin, Failure& failure,
                                         int& attempt, bool retryable);
    // A message that cannot be handled at all (too large, undecodable, no key): straight to
    // the dead-letter topic.
    Outcome dead_letter(const Message& m, const Failure& failure) {
        return forwarder_.dead_letter(m, failure);
    }
    // Records a handler outcome (true = failed for good), for the flood guard.
    void record_outcome(bool failed);

private:
    // Would dead-lettering one more event put the failure ratio over the limit?
    bool flood_tripped() const;
    double unit_random();

    ProcessorState& state_;
    Forwarder& forwarder_;
    std::mutex rng_mutex_;
    std::mt19937_64 rng_{std::random_device{}()};
    // Handler outcomes of the most recent events (true = failed for good), for the flood guard.
    std::deque<bool> outcomes_;
    mutable std::mutex outcomes_mutex_;
};

}  // namespace postroom::runtime::detail
