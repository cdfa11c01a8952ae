#include "postroom/runtime/dead_letter.hpp"

#include <charconv>

#include "../detail/excerpt.hpp"

namespace postroom::runtime {

namespace {

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.compare(0, prefix.size(), prefix) == 0;
}

template <typename T>
T header_number(const Message& m, std::string_view name, T fallback) {
    auto* h = find_header(m.headers, name);
    if (!h || !h->value) return fallback;
    T value{};
    auto [end, ec] = std::from_chars(h->value->data(), h->value->data() + h->value->size(), value);
    return ec == std::errc() && end == h->value->data() + h->value->size() ? value : fallback;
}

// The message's headers without postroom's own families, which are rewritten.
std::vector<Header> foreign_headers(const Message& m) {
    std::vector<Header> out;
    out.reserve(m.headers.size() + 14);
    for (const auto& h : m.headers)
        if (!starts_with(h.name, dlt::prefix) && !starts_with(h.name, retry_header::prefix))
            out.push_back(h);
    return out;
}

}  // namespace

Origin origin_of(const Message& m) {
    Origin o;
    o.topic = m.topic;
    o.partition = m.partition;
    o.offset = m.offset;
    o.position = m.position();
    o.timestamp_ms = m.timestamp_ms;
    auto* topic = find_header(m.headers, retry_header::original_topic);
    if (!topic || !topic->value) return o;
    o.topic = *topic->value;
    o.partition = header_number<int32_t>(m, retry_header::original_partition, 0);
    o.offset = header_number<int64_t>(m, retry_header::original_offset, -1);
    if (auto* h = find_header(m.headers, retry_header::original_offset); h && h->value)
        o.position = *h->value;
    o.timestamp_ms = header_number<int64_t>(m, retry_header::original_timestamp, 0);
    o.level = header_number<int>(m, retry_header::level, 0);
    o.attempts = header_number<int>(m, retry_header::attempts, 0);
    o.due_ms = header_number<int64_t>(m, retry_header::due, 0);
    if (auto* f = find_header(m.headers, retry_header::first_failure); f && f->value)
        o.first_failure = *f->value;
    return o;
}

std::string retry_topic_name(const std::string& topic, int level) {
    return topic + ".retry." + std::to_string(level);
}

OutgoingMessage make_retry(const Message& message, const Failure& failure, int level,
                           int64_t due_ms) {
    auto origin = origin_of(message);
    OutgoingMessage out;
    out.topic = retry_topic_name(origin.topic, level);
    out.key = message.key;
    out.value = message.value;
    out.headers = foreign_headers(message);
    auto add = [&](std::string_view name, std::string value) {
        out.headers.push_back({std::string(name), std::move(value)});
    };
    add(retry_header::due, std::to_string(due_ms));
    add(retry_header::level, std::to_string(level));
    add(retry_header::attempts, std::to_string(failure.attempts));
    add(retry_header::first_failure, failure.first_failure);
    add(retry_header::error_type,
        postroom::detail::excerpt(failure.error_type, max_error_message_bytes));
    add(retry_header::error_message,
        postroom::detail::excerpt(failure.error_message, max_error_message_bytes));
    add(retry_header::original_topic, origin.topic);
    add(retry_header::original_partition, std::to_string(origin.partition));
    add(retry_header::original_offset, origin.position);
    add(retry_header::original_timestamp, std::to_string(origin.timestamp_ms));
    return out;
}

std::string_view to_string(DeadLetterReason reason) noexcept {
    switch (reason) {
        case DeadLetterReason::retries_exhausted: return "retries-exhausted";
        case DeadLetterReason::non_retryable: return "non-retryable";
        case DeadLetterReason::undecodable: return "undecodable";
        case DeadLetterReason::too_large: return "too-large";
        case DeadLetterReason::too_large_for_retry_topic: return "too-large-for-retry-topic";
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
    out.headers = foreign_headers(original);
    const auto origin = origin_of(original);
    auto add = [&](std::string_view name, std::string value) {
        out.headers.push_back({std::string(name), std::move(value)});
    };
    add(dlt::reason, std::string(to_string(failure.reason)));
    add(dlt::error_type, postroom::detail::excerpt(failure.error_type, max_error_message_bytes));
    add(dlt::error_message,
        postroom::detail::excerpt(failure.error_message, max_error_message_bytes));
    if (!failure.error_stack.empty())
        add(dlt::error_stack,
            postroom::detail::excerpt(failure.error_stack, max_error_stack_bytes));
    add(dlt::original_topic, origin.topic);
    add(dlt::original_partition, std::to_string(origin.partition));
    add(dlt::original_offset, origin.position);
    add(dlt::original_timestamp, std::to_string(origin.timestamp_ms));
    add(dlt::processor, processor);
    add(dlt::group, group);
    add(dlt::attempts, std::to_string(failure.attempts));
    add(dlt::first_failure, failure.first_failure);
    add(dlt::last_failure, failure.last_failure);
    return out;
}

namespace {
// Kafka's framing of one record in a batch of its own: the batch header (61 bytes), the
// record's length, attributes, timestamp and offset deltas and the key and value lengths
// (varints), with room to spare; and per header its two lengths.
constexpr std::size_t framing_bytes = 128;
constexpr std::size_t header_framing_bytes = 12;
}  // namespace

std::size_t record_bytes(const OutgoingMessage& record) {
    std::size_t n = framing_bytes + (record.key ? record.key->size() : 0) +
                    (record.value ? record.value->size() : 0);
    for (const auto& h : record.headers)
        n += header_framing_bytes + h.name.size() + (h.value ? h.value->size() : 0);
    return n;
}

bool fit_dead_letter(OutgoingMessage& letter, std::size_t max_bytes) {
    const std::size_t size = record_bytes(letter);
    if (size <= max_bytes) return true;
    const std::size_t value_size = letter.value ? letter.value->size() : 0;
    const std::string length = std::to_string(value_size);
    const std::size_t notes = 2 * header_framing_bytes + dlt::value_truncated.size() + 4 +
                              dlt::value_length.size() + length.size();
    const std::size_t without_value = size - value_size + notes;
    if (without_value > max_bytes) return false;
    if (letter.value) letter.value->resize(std::min(value_size, max_bytes - without_value));
    letter.headers.push_back({std::string(dlt::value_truncated), std::string("true")});
    letter.headers.push_back({std::string(dlt::value_length), length});
    return true;
}

}  // namespace postroom::runtime
