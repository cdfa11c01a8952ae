#include "postroom/runtime/dead_letter.hpp"

namespace postroom::runtime {

std::string_view to_string(DeadLetterReason reason) noexcept {
    switch (reason) {
        case DeadLetterReason::retries_exhausted: return "retries-exhausted";
        case DeadLetterReason::non_retryable: return "non-retryable";
        case DeadLetterReason::undecodable: return "undecodable";
        case DeadLetterReason::too_large: return "too-large";
    }
    return "unknown";
}

OutgoingMessage make_dead_letter(const Message& original, const Failure& failure,
                                 const std::string& dead_letter_topic, const std::string& processor,
                                 const std::string& group) {
    OutgoingMessage out;
    out.topic = dead_letter_topic;
    out.key = original.key;
    out.value = original.value;
    out.headers.reserve(original.headers.size() + 14);
    for (const auto& h : original.headers)
        if (h.name.compare(0, dlt::prefix.size(), dlt::prefix) != 0) out.headers.push_back(h);
    auto add = [&](std::string_view name, std::string value) {
        out.headers.push_back({std::string(name), std::move(value)});
    };
    add(dlt::reason, std::string(to_string(failure.reason)));
    add(dlt::error_type, failure.error_type);
    add(dlt::error_message, failure.error_message);
    if (!failure.error_stack.empty()) add(dlt::error_stack, failure.error_stack);
    add(dlt::original_topic, original.topic);
    add(dlt::original_partition, std::to_string(original.partition));
    add(dlt::original_offset, std::to_string(original.offset));
    add(dlt::original_timestamp, std::to_string(original.timestamp_ms));
    add(dlt::processor, processor);
    add(dlt::group, group);
    add(dlt::attempts, std::to_string(failure.attempts));
    add(dlt::first_failure, failure.first_failure);
    add(dlt::last_failure, failure.last_failure);
    return out;
}

}  // namespace postroom::runtime
