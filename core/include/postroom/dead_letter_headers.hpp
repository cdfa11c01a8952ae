#pragma once
// postroom's dead-letter record: the original key, value and headers, plus a documented
// header family saying why and where processing failed. Every value is UTF-8 text
// (numbers in decimal, times in RFC 3339), so any tool can read them.
//
//   postroom-dlt-reason              retries-exhausted | non-retryable | undecodable | too-large
//                                    | too-large-for-retry-topic
//   postroom-dlt-error-type          exception class (e.g. ValueError, postroom::CodecError)
//   postroom-dlt-error-message       its message (at most 4 KiB: a longer one is cut)
//   postroom-dlt-error-stack         stack or Python traceback, when known (at most 64 KiB)
//   postroom-dlt-original-topic / -original-partition / -original-offset
//                                    (on Redis Streams: partition 0, the entry id as offset)
//   postroom-dlt-original-timestamp  the original record's timestamp, ms since the epoch
//   postroom-dlt-processor           processor name (the idempotency scope)
//   postroom-dlt-group               consumer group
//   postroom-dlt-attempts            attempts made
//   postroom-dlt-first-failure / -last-failure   RFC 3339 times
//   postroom-dlt-value-truncated     "true" when the value was cut to fit the dead-letter
//                                    topic's record size limit (only then present)
//   postroom-dlt-value-length        the original value's length in bytes (with the above)
//
// A letter always fits where it goes: a value too large for the dead-letter topic is cut to
// a prefix, and the original stays at its original topic, partition and offset.
//
// An event on its way through a retry topic (<topic>.retry.<level>) carries the
// postroom-retry-* family instead, all UTF-8 text as well:
//
//   postroom-retry-due               when it may be tried again, ms since the epoch
//   postroom-retry-level             1 for <topic>.retry.1, ...
//   postroom-retry-attempts          attempts made so far, over all levels
//   postroom-retry-first-failure     RFC 3339
//   postroom-retry-error-type / -error-message   the last failure
//   postroom-retry-original-topic / -original-partition / -original-offset
//   postroom-retry-original-timestamp  where the event was first consumed
//
// A dead letter of such an event names its original coordinates, not the retry topic's.
//
// The names are shared by the processor that writes these headers, the dead-letter tooling that
// reads them and every transport that carries them.

#include <cstddef>
#include <string_view>

namespace postroom {

namespace dlt {
inline constexpr std::string_view prefix = "postroom-dlt-";
inline constexpr std::string_view reason = "postroom-dlt-reason";
inline constexpr std::string_view error_type = "postroom-dlt-error-type";
inline constexpr std::string_view error_message = "postroom-dlt-error-message";
inline constexpr std::string_view error_stack = "postroom-dlt-error-stack";
inline constexpr std::string_view original_topic = "postroom-dlt-original-topic";
inline constexpr std::string_view original_partition = "postroom-dlt-original-partition";
inline constexpr std::string_view original_offset = "postroom-dlt-original-offset";
inline constexpr std::string_view original_timestamp = "postroom-dlt-original-timestamp";
inline constexpr std::string_view processor = "postroom-dlt-processor";
inline constexpr std::string_view group = "postroom-dlt-group";
inline constexpr std::string_view attempts = "postroom-dlt-attempts";
inline constexpr std::string_view first_failure = "postroom-dlt-first-failure";
inline constexpr std::string_view last_failure = "postroom-dlt-last-failure";
inline constexpr std::string_view value_truncated = "postroom-dlt-value-truncated";
inline constexpr std::string_view value_length = "postroom-dlt-value-length";
}  // namespace dlt

// Failure texts are bounded in dead letters and retry records: a handler's exception message
// can echo any input.
inline constexpr std::size_t max_error_message_bytes = 4096;
inline constexpr std::size_t max_error_stack_bytes = 65536;

namespace retry_header {
inline constexpr std::string_view prefix = "postroom-retry-";
inline constexpr std::string_view due = "postroom-retry-due";
inline constexpr std::string_view level = "postroom-retry-level";
inline constexpr std::string_view attempts = "postroom-retry-attempts";
inline constexpr std::string_view first_failure = "postroom-retry-first-failure";
inline constexpr std::string_view error_type = "postroom-retry-error-type";
inline constexpr std::string_view error_message = "postroom-retry-error-message";
inline constexpr std::string_view original_topic = "postroom-retry-original-topic";
inline constexpr std::string_view original_partition = "postroom-retry-original-partition";
inline constexpr std::string_view original_offset = "postroom-retry-original-offset";
inline constexpr std::string_view original_timestamp = "postroom-retry-original-timestamp";
}  // namespace retry_header

}  // namespace postroom
