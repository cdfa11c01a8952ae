#include "postroom/dlq/dead_letters.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace postroom::dlq {

namespace {

const std::string* header(const Message& m, std::string_view name) {
    for (const auto& h : m.headers)
        if (h.name == name && h.value) return &*h.value;
    return nullptr;
}

std::string text(const Message& m, std::string_view name) {
    const auto* v = header(m, name);
    return v ? *v : std::string();
}

bool all_digits(std::string_view s) {
    if (!s.empty() && s.front() == '-') s.remove_prefix(1);
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A number written as UTF-8 text (postroom, Connect, Streams, ...) or as a big-endian binary
// int or long (Spring Kafka's partition, offset and timestamp headers).
std::optional<int64_t> number(const std::string* v) {
    if (!v || v->empty()) return std::nullopt;
    if (all_digits(*v)) {
        int64_t n = 0;
        auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
        if (ec == std::errc() && end == v->data() + v->size()) return n;
        return std::nullopt;
    }
    if (v->size() == 4 || v->size() == 8) {
        uint64_t n = 0;
        for (unsigned char c : *v) n = (n << 8) | c;
        if (v->size() == 4) return static_cast<int64_t>(static_cast<int32_t>(n));
        return static_cast<int64_t>(n);
    }
    return std::nullopt;
}

std::string number_text(const std::string* v) {
    if (!v) return {};
    auto n = number(v);
    return n ? std::to_string(*n) : *v;
}

std::optional<int32_t> partition_of(const std::string* v) {
    auto n = number(v);
    if (!n) return std::nullopt;
    return static_cast<int32_t>(*n);
}

bool is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_word(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

// 8-4-4-4-12 hex digits at s[i]?
bool uuid_at(std::string_view s, std::size_t i) {
    static constexpr int groups[] = {8, 4, 4, 4, 12};
    for (int g = 0; g < 5; ++g) {
        for (int k = 0; k < groups[g]; ++k, ++i)
            if (i >= s.size() || !is_hex(s[i])) return false;
        if (g < 4) {
            if (i >= s.size() || s[i] != '-') return false;
            ++i;
        }
    }
    return i == s.size() || !is_word(s[i]);
}

uint64_t fnv1a(std::string_view a, uint64_t h = 1469598103934665603ULL) {
    for (unsigned char c : a) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    return h;
}

}  // namespace

std::string_view to_string(Convention c) noexcept {
    switch (c) {
        case Convention::postroom: return "postroom";
        case Convention::spring: return "spring";
        case Convention::spring_retry: return "spring-retry-topic";
        case Convention::kafka_connect: return "kafka-connect";
        case Convention::kafka_streams: return "kafka-streams";
        case Convention::watermill: return "watermill";
        case Convention::masstransit: return "masstransit";
        case Convention::nservicebus: return "nservicebus";
        case Convention::unknown: return "unknown";
    }
    return "unknown";
}

std::string DeadLetter::id() const {
    if (!record.id.empty()) return record.topic + ":" + record.id;
    return record.topic + ":" + std::to_string(record.partition) + ":" +
           std::to_string(record.offset);
}

DeadLetter decode(Message record) {
    DeadLetter d;
    d.record = std::move(record);
    const auto& m = d.record;
    if (auto n = number(header(m, "postroom-replay-count"))) d.replay_count = static_cast<int>(*n);
    if (header(m, "postroom-dlt-reason") || header(m, "postroom-dlt-error-type")) {
        d.convention = Convention::postroom;
        d.reason = text(m, "postroom-dlt-reason");
        d.error_type = text(m, "postroom-dlt-error-type");
        d.error_message = text(m, "postroom-dlt-error-message");
        d.error_stack = text(m, "postroom-dlt-error-stack");
        d.original_topic = text(m, "postroom-dlt-original-topic");
        d.original_partition = partition_of(header(m, "postroom-dlt-original-partition"));
        d.original_offset = text(m, "postroom-dlt-original-offset");
        d.group = text(m, "postroom-dlt-group");
        d.attempts = number(header(m, "postroom-dlt-attempts"));
        d.failed_at = text(m, "postroom-dlt-last-failure");
    } else if (header(m, "kafka_dlt-exception-fqcn") || header(m, "kafka_dlt-original-topic")) {
        d.convention = Convention::spring;
        // The outer type is nearly always ListenerExecutionFailedException: prefer the cause.
        d.error_type = text(m, "kafka_dlt-exception-cause-fqcn");
        if (d.error_type.empty()) d.error_type = text(m, "kafka_dlt-exception-fqcn");
        d.error_message = text(m, "kafka_dlt-exception-message");
        d.error_stack = text(m, "kafka_dlt-exception-stacktrace");
        d.original_topic = text(m, "kafka_dlt-original-topic");
        d.original_partition = partition_of(header(m, "kafka_dlt-original-partition"));
        d.original_offset = number_text(header(m, "kafka_dlt-original-offset"));
        d.group = text(m, "kafka_dlt-original-consumer-group");
        d.failed_at = number_text(header(m, "kafka_dlt-original-timestamp"));
    } else if (header(m, "kafka_exception-fqcn") || header(m, "kafka_original-topic")) {
        d.convention = Convention::spring_retry;
        d.error_type = text(m, "kafka_exception-cause-fqcn");
        if (d.error_type.empty()) d.error_type = text(m, "kafka_exception-fqcn");
        d.error_message = text(m, "kafka_exception-message");
        d.error_stack = text(m, "kafka_exception-stacktrace");
        d.original_topic = text(m, "kafka_original-topic");
        d.original_partition = partition_of(header(m, "kafka_original-partition"));
        d.original_offset = number_text(header(m, "kafka_original-offset"));
        d.group = text(m, "kafka_dlt-original-consumer-group");
        d.attempts = number(header(m, "retry_topic-attempts"));
        d.failed_at = number_text(header(m, "retry_topic-backoff-timestamp"));
    } else if (header(m, "__connect.errors.exception.class.name") ||
               header(m, "__connect.errors.topic")) {
        d.convention = Convention::kafka_connect;
        d.error_type = text(m, "__connect.errors.exception.class.name");
        d.error_message = text(m, "__connect.errors.exception.message");
        d.error_stack = text(m, "__connect.errors.exception.stacktrace");
        d.original_topic = text(m, "__connect.errors.topic");
        d.original_partition = partition_of(header(m, "__connect.errors.partition"));
        d.original_offset = number_text(header(m, "__connect.errors.offset"));
        d.group = text(m, "__connect.errors.connector.name");
        if (auto task = text(m, "__connect.errors.task.id"); !task.empty())
            d.group += (d.group.empty() ? "task " : " task ") + task;
        d.reason = text(m, "__connect.errors.stage");
    } else if (header(m, "__streams.errors.exception") || header(m, "__streams.errors.topic")) {
        d.convention = Convention::kafka_streams;
        d.error_type = text(m, "__streams.errors.exception");
        d.error_message = text(m, "__streams.errors.message");
        d.error_stack = text(m, "__streams.errors.stacktrace");
        d.original_topic = text(m, "__streams.errors.topic");
        d.original_partition = partition_of(header(m, "__streams.errors.partition"));
        d.original_offset = number_text(header(m, "__streams.errors.offset"));
    } else if (header(m, "reason_poisoned")) {
        d.convention = Convention::watermill;
        d.error_message = text(m, "reason_poisoned");
        d.original_topic = text(m, "topic_poisoned");
        d.group = text(m, "handler_poisoned");
        if (auto s = text(m, "subscriber_poisoned"); !s.empty())
            d.group += (d.group.empty() ? "" : " / ") + s;
    } else if (header(m, "MT-Fault-ExceptionType") || header(m, "MT-Fault-Message")) {
        d.convention = Convention::masstransit;
        d.error_type = text(m, "MT-Fault-ExceptionType");
        d.error_message = text(m, "MT-Fault-Message");
        d.error_stack = text(m, "MT-Fault-StackTrace");
        d.original_topic = text(m, "MT-Source-Address");
        d.group = text(m, "MT-Fault-ConsumerType");
        d.attempts = number(header(m, "MT-Fault-RetryCount"));
        d.failed_at = text(m, "MT-Fault-Timestamp");
        d.reason = text(m, "MT-Reason");
    } else if (header(m, "NServiceBus.ExceptionInfo.ExceptionType") ||
               header(m, "NServiceBus.FailedQ")) {
        d.convention = Convention::nservicebus;
        d.error_type = text(m, "NServiceBus.ExceptionInfo.ExceptionType");
        d.error_message = text(m, "NServiceBus.ExceptionInfo.Message");
        d.error_stack = text(m, "NServiceBus.ExceptionInfo.StackTrace");
        d.original_topic = text(m, "NServiceBus.FailedQ");
        d.group = text(m, "NServiceBus.ProcessingEndpoint");
        d.attempts = number(header(m, "NServiceBus.Retries"));
        d.failed_at = text(m, "NServiceBus.TimeOfFailure");
    }
    d.fingerprint = fingerprint(d.error_type, d.error_message, d.error_stack);
    return d;
}

std::string normalise_message(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    bool space = false;
    for (std::size_t i = 0; i < s.size();) {
        const char c = s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            space = true;
            ++i;
            continue;
        }
        if (space && !out.empty()) out += ' ';
        space = false;
        const bool boundary = i == 0 || !is_word(s[i - 1]);
        if (boundary && is_hex(c) && uuid_at(s, i)) {
            out += "<uuid>";
            i += 36;
            continue;
        }
        if (boundary && is_hex(c)) {
            std::size_t j = i;
            bool digit = false;
            while (j < s.size() && is_hex(s[j])) digit |= is_digit(s[j++]);
            if (j - i >= 8 && digit && (j == s.size() || !is_word(s[j]))) {
                out += "<hex>";
                i = j;
                continue;
            }
        }
        if (is_digit(c)) {
            std::size_t j = i;
            while (j < s.size() &&
                   (is_digit(s[j]) || (s[j] == '.' && j + 1 < s.size() && is_digit(s[j + 1]))))
                ++j;
            out += "<n>";
            i = j;
            continue;
        }
        if (c == '\'' || c == '"') {
            auto close = s.find(c, i + 1);
            if (close != std::string_view::npos && close - i <= 200) {
                out += c;
                out += "<s>";
                out += c;
                i = close + 1;
                continue;
            }
        }
        out += c;
        ++i;
    }
    return out;
}

std::string top_frame(std::string_view stack) {
    auto strip_numbers = [](std::string_view line) {
        std::string out;
        for (char c : line)
            if (!is_digit(c)) out += c;
        return out;
    };
    auto trim = [](std::string_view line) {
        while (!line.empty() && (line.front() == ' ' || line.front() == '\t'))
            line.remove_prefix(1);
        while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.remove_suffix(1);
        return line;
    };
    std::string_view last_python;
    std::size_t pos = 0;
    while (pos < stack.size()) {
        auto end = stack.find('\n', pos);
        if (end == std::string_view::npos) end = stack.size();
        auto line = trim(stack.substr(pos, end - pos));
        pos = end + 1;
        if (line.rfind("at ", 0) == 0) return strip_numbers(line);  // Java, .NET
        if (line.rfind("File \"", 0) == 0) last_python = line;      // Python: innermost last
    }
    return last_python.empty() ? std::string() : strip_numbers(last_python);
}

std::string fingerprint(std::string_view error_type, std::string_view message,
                        std::string_view stack) {
    auto h = fnv1a(error_type);
    h = fnv1a("\x1f", h);
    h = fnv1a(normalise_message(message), h);
    h = fnv1a("\x1f", h);
    h = fnv1a(top_frame(stack), h);
    char buf[17];
    static constexpr char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; --i) {
        buf[i] = digits[h & 0xf];
        h >>= 4;
    }
    buf[16] = 0;
    return buf;
}

void Stats::add(const DeadLetter& letter) {
    ++total_;
    auto [it, fresh] = groups_.try_emplace(letter.fingerprint);
    auto& g = it->second;
    if (fresh) {
        g.fingerprint = letter.fingerprint;
        g.error_type = letter.error_type;
        g.message = normalise_message(letter.error_message);
        g.top_frame = top_frame(letter.error_stack);
    }
    ++g.count;
    const auto ts = letter.record.timestamp_ms;
    if (ts >= 0 && (g.first_seen_ms < 0 || ts < g.first_seen_ms)) g.first_seen_ms = ts;
    if (ts >= 0 && ts > g.last_seen_ms) {  // strictly newer: an id is built rarely
        g.last_seen_ms = ts;
        g.sample_id = letter.id();
    }
    if (g.sample_id.empty()) g.sample_id = letter.id();
    if (!letter.original_topic.empty()) g.original_topics.insert(letter.original_topic);
    if (!letter.group.empty()) g.groups.insert(letter.group);
    g.conventions.insert(letter.convention);
}

std::vector<Group> Stats::groups() const {
    std::vector<Group> out;
    out.reserve(groups_.size());
    for (const auto& [_, g] : groups_) out.push_back(g);
    std::sort(out.begin(), out.end(), [](const Group& a, const Group& b) {
        if (a.count != b.count) return a.count > b.count;
        return a.last_seen_ms > b.last_seen_ms;
    });
    return out;
}

bool Filter::matches(const DeadLetter& d) const {
    const auto& m = d.record;
    if (!ids.empty() && !ids.count(d.id())) return false;
    if (since_ms >= 0 && m.timestamp_ms < since_ms) return false;
    if (until_ms >= 0 && m.timestamp_ms >= until_ms) return false;
    if (key && m.key != key) return false;
    if (!header_name.empty()) {
        const auto* h = find_header(m.headers, header_name);
        if (!h) return false;
        if (header_value && h->value != header_value) return false;
    }
    if (!error_type.empty() && d.error_type.find(error_type) == std::string::npos) return false;
    if (!original_topic.empty() && d.original_topic != original_topic) return false;
    if (!fingerprint.empty() && d.fingerprint.rfind(fingerprint, 0) != 0) return false;
    if (!text.empty() && (!m.value || m.value->find(text) == std::string::npos)) return false;
    return true;
}

}  // namespace postroom::dlq
