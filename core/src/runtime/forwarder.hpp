#pragma once
// The processor's forwarder (internal): writes dead letters and retry records, one at a time,
// each acknowledged before the event counts as finished. Its producer is made on first use.
// A record that its topic keeps refusing stops the processor with an error, which the polling
// thread throws (rethrow_fatal()).
//
// Thread-safety: dead_letter() and schedule_retry() may be called from any thread (the
// polling thread, the lanes); they write one record at a time. rethrow_fatal() too.

#include <cstddef>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "postroom/message.hpp"
#include "postroom/runtime/dead_letter.hpp"
#include "postroom/transport.hpp"
#include "processor_state.hpp"

namespace postroom::runtime::detail {

class Forwarder {
public:
    explicit Forwarder(ProcessorState& state) : state_(state) {}

    // Writes `m`'s dead letter for `failure` to the dead-letter topic.
    Outcome dead_letter(const Message& m, const Failure& failure);
    // Sends the event to retry topic `level`, due after that level's delay. An event larger
    // than the retry topic takes goes to the dead-letter topic instead.
    Outcome schedule_retry(const Message& m, const Failure& failure, int level);

    // Throws the failure that stopped the processor, if one did.
    void rethrow_fatal();
    // Closes the producer, if one was made.
    void close();

private:
    // Unless producer_properties say otherwise: records as large as the topics take (their
    // limit is the one that counts).
    static constexpr std::size_t forwarder_max_record_bytes = 64 << 20;
    // How often a forwarded record may be refused for a reason waiting does not mend (too
    // large, invalid topic, not authorised) before the processor stops.
    static constexpr int max_refusals = 5;

    transport::Producer& the_forwarder();
    const transport::TopicLimits& limits_of(const std::string& topic, bool again = false);
    void stop_with(std::exception_ptr error);
    std::optional<Outcome> forward(
        const Message& m, const std::string& topic, std::string_view blocked_what,
        const std::function<std::optional<OutgoingMessage>(std::optional<std::size_t>)>& make,
        const std::function<void(const OutgoingMessage&)>& on_written);

    ProcessorState& state_;
    std::mutex forwarder_mutex_;
    std::unique_ptr<transport::Producer> forwarder_;  // dead letters and retries; first use
    // What the forwarder's topics take (dead-letter and retry topics), learned on first use
    // and again when the broker refuses a record as too large.
    std::map<std::string, transport::TopicLimits> limits_;
    // A failure that ends run(): set by the thread that meets it, thrown by run_once().
    std::mutex fatal_mutex_;
    std::exception_ptr fatal_;
};

}  // namespace postroom::runtime::detail
