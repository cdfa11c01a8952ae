#pragma once
// The dead-letter and retry records the processor writes (their header family:
// postroom/dead_letter_headers.hpp): building them, fitting them to a topic's record size limit,
// and reading an event's origin back from a retry record.
//
// Thread-safety: regular value types and pure functions.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "postroom/dead_letter_headers.hpp"
#include "postroom/message.hpp"

namespace postroom::runtime {

// Where an event was first consumed, and how far through the retry topics it is: from its
// postroom-retry-* headers, or the message itself when it has none.
struct Origin {
    std::string topic;
    int32_t partition = 0;
    int64_t offset = 0;
    std::string position;  // Message::position(): the offset, or the Redis entry id
    int64_t timestamp_ms = 0;
    int level = 0;       // 0 = not from a retry topic
    int attempts = 0;    // attempts made before this delivery
    int64_t due_ms = 0;  // 0 = due now
    std::string first_failure;
};
Origin origin_of(const Message& message);

// "<topic>.retry.<level>"
std::string retry_topic_name(const std::string& topic, int level);

// too_large_for_retry_topic: it failed and could be retried, but it is larger than its
// retry topic takes, so it cannot travel through the retry topics.
enum class DeadLetterReason {
    retries_exhausted,
    non_retryable,
    undecodable,
    too_large,
    too_large_for_retry_topic,
};
std::string_view to_string(DeadLetterReason reason) noexcept;

// Why processing failed, as the runtime saw it.
struct Failure {
    DeadLetterReason reason = DeadLetterReason::retries_exhausted;
    std::string error_type;
    std::string error_message;
    std::string error_stack;
    int attempts = 0;
    std::string first_failure;  // RFC 3339
    std::string last_failure;   // RFC 3339
};

// The record to write to `dead_letter_topic`: the original key, value and headers (earlier
// postroom-dlt-* and postroom-retry-* headers replaced), plus the postroom-dlt-* family.
OutgoingMessage make_dead_letter(const Message& original, const Failure& failure,
                                 const std::string& dead_letter_topic, const std::string& processor,
                                 const std::string& group);

// The size `record` counts for against a broker's record size limit: key, value, header
// names and values, and an allowance for the record's framing.
std::size_t record_bytes(const OutgoingMessage& record);

// Makes a dead letter fit `max_bytes` (see record_bytes): a letter that is larger keeps its
// key and headers and a prefix of its value, and says so (postroom-dlt-value-truncated,
// postroom-dlt-value-length). False when its key and headers alone are too large.
bool fit_dead_letter(OutgoingMessage& letter, std::size_t max_bytes);

}  // namespace postroom::runtime

namespace postroom::runtime {

// The record to write to retry topic `level` of the event's original topic, due at `due_ms`:
// the original key, value and headers plus the postroom-retry-* family.
OutgoingMessage make_retry(const Message& message, const Failure& failure, int level,
                           int64_t due_ms);

}  // namespace postroom::runtime
