#pragma once
// What the parts of the consumer runtime share (internal): the checked configuration, the
// consumer, the stop flag, the counters, the log line and the waits that stop() ends. The
// processor's Impl (processor.cpp) is one; the forwarder, the failure routing, the segment
// transaction and the lanes each get a reference to it.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "../detail/structured_log.hpp"
#include "postroom/message.hpp"
#include "postroom/runtime/processor.hpp"
#include "postroom/transport.hpp"

namespace postroom::runtime::detail {

using Clock = std::chrono::steady_clock;

// How handling an event (or forwarding its record) ended: finished, or left unfinished
// because the processor stops (or the lane's partitions are revoked).
enum class Outcome { done, abandoned };

struct ProcessorState {
    ProcessorConfig config;
    std::unique_ptr<transport::Consumer> consumer;
    std::atomic<bool> stop_requested{false};
    mutable std::mutex counters_mutex;
    Counters counts;
    // On a lane's thread (concurrency > 1): that lane's interrupt flag, set when its
    // partitions are revoked.
    static inline thread_local const std::atomic<bool>* lane_interrupt = nullptr;

    template <typename F>
    void count(F&& f) {
        std::lock_guard lock(counters_mutex);
        f(counts);
    }

    void log(int level, std::string_view what, const Message& m, const std::string& detail) {
        using postroom::detail::escaped;
        std::string line = std::string("postroom level=") + (level <= 3 ? "error" : "warning") +
                           " processor=\"" + escaped(config.name) + "\" event=\"" +
                           std::string(what) + "\" topic=\"" + escaped(m.topic) +
                           "\" partition=" + std::to_string(m.partition) +
                           " offset=" + m.position() + " detail=\"" + escaped(detail) + "\"";
        (config.log ? config.log : postroom::detail::default_log)(level, line);
    }

    // Sleeps up to `d` in slices, calling on_wait; false when stop() was requested.
    bool wait_for(std::chrono::milliseconds d) {
        using namespace std::chrono;
        auto until = Clock::now() + d;
        while (!abandoning()) {
            // Compare time points, not truncated milliseconds: never wake up early.
            auto left = until - Clock::now();
            if (left <= Clock::duration::zero()) return true;
            std::this_thread::sleep_for(std::min<Clock::duration>(left, milliseconds(100)));
            if (config.on_wait) config.on_wait();
        }
        return false;
    }

    // Stop handling what is in hand: the processor stops, or the lane's partitions are revoked.
    bool abandoning() const {
        return stop_requested.load() || (lane_interrupt && lane_interrupt->load());
    }

    // Backoff for a blocked resource (store, dead-letter topic): never a hot loop.
    std::chrono::milliseconds blocked_backoff(int round) const {
        using namespace std::chrono;
        auto d = milliseconds(100) * (1LL << std::min(round, 12));
        return std::min<milliseconds>(d, config.blocked_backoff_max);
    }
};

}  // namespace postroom::runtime::detail
