#pragma once
// Retry schedule: exponential backoff with jitter, a cap and a maximum number of attempts.
//
// Thread-safety: a value type.

#include <chrono>
#include <utility>

namespace postroom::runtime {

struct RetryPolicy {
    int max_attempts = 5;  // attempts in all, the first included; 1 = no retry
    std::chrono::milliseconds initial_delay{100};
    double multiplier = 2.0;
    std::chrono::milliseconds max_delay{30'000};
    double jitter = 0.2;  // each delay varies by up to this fraction, both ways

    // Throws ConfigurationError naming the bad field.
    void validate() const;

    // The delay before attempt `attempt` (2 = the first retry), given a uniform random
    // number in [0, 1): initial_delay * multiplier^(attempt - 2), capped at max_delay,
    // then jittered.
    std::chrono::milliseconds delay_before(int attempt, double unit_random) const;
    // The smallest and largest delay delay_before() can return for `attempt`.
    std::pair<std::chrono::milliseconds, std::chrono::milliseconds> bounds(int attempt) const;
};

}  // namespace postroom::runtime
