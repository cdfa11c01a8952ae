#include "postroom/runtime/retry.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "postroom/error.hpp"

namespace postroom::runtime {

using std::chrono::milliseconds;

void RetryPolicy::validate() const {
    if (max_attempts < 1) throw ConfigurationError("retry max_attempts must be at least 1");
    if (initial_delay.count() < 0)
        throw ConfigurationError("retry initial_delay must not be negative");
    if (multiplier < 1.0) throw ConfigurationError("retry multiplier must be at least 1.0");
    if (max_delay < initial_delay)
        throw ConfigurationError("retry max_delay must be at least initial_delay");
    if (jitter < 0.0 || jitter >= 1.0) throw ConfigurationError("retry jitter must be in [0, 1)");
}

namespace {
double base_ms(const RetryPolicy& p, int attempt) {
    const int exponent = std::max(0, attempt - 2);
    const double raw = static_cast<double>(p.initial_delay.count()) *
                       std::pow(p.multiplier, static_cast<double>(exponent));
    return std::min(raw, static_cast<double>(p.max_delay.count()));
}
}  // namespace

milliseconds RetryPolicy::delay_before(int attempt, double unit_random) const {
    const double base = base_ms(*this, attempt);
    const double factor = 1.0 + jitter * (2.0 * unit_random - 1.0);
    return milliseconds(static_cast<int64_t>(std::llround(base * factor)));
}

std::pair<milliseconds, milliseconds> RetryPolicy::bounds(int attempt) const {
    const double base = base_ms(*this, attempt);
    return {milliseconds(static_cast<int64_t>(std::floor(base * (1.0 - jitter)))),
            milliseconds(static_cast<int64_t>(std::ceil(base * (1.0 + jitter))))};
}

}  // namespace postroom::runtime
