#include "postroom/dlq/dead_letters.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "postroom/dead_letter_headers.hpp"

namespace postroom::dlq {

namespace {

using Headers = std::span<const HeaderView>;

const std::string_view* header(Headers headers, std::string_view name) {
    for (const auto& h : headers)
        if (h.name == name && h.value) return &*h.value;
    return nullptr;
}

std::string_view text(Headers headers, std::string_view name) {
    const auto* v = header(headers, name);
    return v ? *v : std::string_view();
}

bool all_digits(std::string_view s) {
    if (!s.empty() && s.front() == '-') s.remove_prefix(1);
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A number written as UTF-8 text (postroom, Connect, Streams, ...) or as a big-endian binary
// int or long (Spring Kafka's partition, offset and timestamp headers).
std::optional<int64_t> number(const std::string_view* v) {
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

// A number header as text: as written when it is text, written out when it is binary.
FactText number_text(const std::string_view* v) {
    if (!v) return {};
    auto n = number(v);
    if (!n) return *v;
    char digits[24];
    const std::string_view written(digits, std::to_chars(digits, digits + sizeof digits, *n).ptr);
    if (written == *v) return *v;
    return FactText::derived(std::string(written));
}

std::optional<int32_t> partition_of(const std::string_view* v) {
    auto n = number(v);
    if (!n) return std::nullopt;
    return static_cast<int32_t>(*n);
}

// `first`, then `second` after `separator` (or `alone` before it when `first` is empty).
FactText joined(std::string_view first, std::string_view second, std::string_view separator,
                std::string_view alone) {
    if (second.empty()) return first;
    std::string out(first);
    out += first.empty() ? alone : separator;
    out += second;
    return FactText::derived(std::move(out));
}

bool is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_word(char c) {  // ASCII letters, digits and '_', whatever the locale
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_';
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
    MessageView v;
    v.topic = record.topic;
    v.partition = record.partition;
    v.offset = record.offset;
    v.id = record.id;
    std::string out;
    append_letter_id(out, v);
    return out;
}

void append_letter_id(std::string& out, const MessageView& record) {
    out += record.topic;
    out += ':';
    if (!record.id.empty()) {
        out += record.id;
        return;
    }
    char digits[24];
    out.append(digits, std::to_chars(digits, digits + sizeof digits, record.partition).ptr);
    out += ':';
    out.append(digits, std::to_chars(digits, digits + sizeof digits, record.offset).ptr);
}

bool is_failure_header(std::string_view name) noexcept {
    static constexpr std::string_view prefixes[] = {
        dlt::prefix,
        retry_header::prefix,
        "kafka_dlt-",
        "kafka_exception-",
        "kafka_original-",
        "retry_topic-",
        "__connect.errors.",
        "__streams.errors.",
        "MT-Fault-",
        "MT-Host-",
        "NServiceBus.ExceptionInfo.",
        "NServiceBus.Retries",
    };
    for (auto p : prefixes)
        if (name.substr(0, p.size()) == p) return true;
    static constexpr std::string_view poisoned = "_poisoned";
    if (name.size() > poisoned.size() && name.substr(name.size() - poisoned.size()) == poisoned)
        return true;
    return name == "MT-Reason" || name == "NServiceBus.FailedQ" ||
           name == "NServiceBus.TimeOfFailure" || name == "NServiceBus.ProcessingEndpoint" ||
           name == "NServiceBus.ProcessingMachine";
}

LetterFacts decode_facts(Headers m) {
    LetterFacts d;
    if (auto n = number(header(m, "postroom-replay-count"))) d.replay_count = static_cast<int>(*n);
    d.replayed_from = text(m, "postroom-replayed-from");
    d.replay_id = text(m, "postroom-replay-id");
    d.value_truncated = text(m, dlt::value_truncated) == "true";
    d.value_length = number(header(m, dlt::value_length));
    if (header(m, dlt::reason) || header(m, dlt::error_type)) {
        d.convention = Convention::postroom;
        d.reason = text(m, dlt::reason);
        d.error_type = text(m, dlt::error_type);
        d.error_message = text(m, dlt::error_message);
        d.error_stack = text(m, dlt::error_stack);
        d.original_topic = text(m, dlt::original_topic);
        d.original_partition = partition_of(header(m, dlt::original_partition));
        d.original_offset = text(m, dlt::original_offset);
        d.group = text(m, dlt::group);
        d.attempts = number(header(m, dlt::attempts));
        d.failed_at = text(m, dlt::last_failure);
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
        d.group = joined(text(m, "__connect.errors.connector.name"),
                         text(m, "__connect.errors.task.id"), " task ", "task ");
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
        d.group = joined(text(m, "handler_poisoned"), text(m, "subscriber_poisoned"), " / ", "");
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
    return d;
}

DeadLetter decode(Message record) {
    DeadLetter d;
    d.record = std::move(record);
    std::vector<HeaderView> headers;
    headers.reserve(d.record.headers.size());
    for (const auto& h : d.record.headers)
        headers.push_back(
            {h.name, h.value ? std::optional<std::string_view>(*h.value) : std::nullopt});
    const auto f = decode_facts(headers);
    d.convention = f.convention;
    d.error_type = f.error_type;
    d.error_message = f.error_message;
    d.error_stack = f.error_stack;
    d.reason = f.reason.view();
    d.original_topic = f.original_topic;
    d.original_partition = f.original_partition;
    d.original_offset = f.original_offset.view();
    d.group = f.group.view();
    d.attempts = f.attempts;
    d.failed_at = f.failed_at.view();
    d.replay_count = f.replay_count;
    d.replayed_from = f.replayed_from;
    d.replay_id = f.replay_id;
    d.value_truncated = f.value_truncated;
    d.value_length = f.value_length;
    d.fingerprint = fingerprint(d.error_type, d.error_message, d.error_stack);
    return d;
}

namespace {

// Where normalised text goes: a string, or straight into a hash.
struct ToString {
    std::string& out;
    void put(char c) { out += c; }
    void put(std::string_view s) { out += s; }
};
struct ToHash {
    uint64_t& h;
    void put(char c) { h = fnv1a(std::string_view(&c, 1), h); }
    void put(std::string_view s) { h = fnv1a(s, h); }
};

template <class Out>
void normalise_into(std::string_view s, Out out) {
    bool space = false, any = false;
    for (std::size_t i = 0; i < s.size();) {
        const char c = s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            space = true;
            ++i;
            continue;
        }
        if (space && any) out.put(' ');
        space = false;
        any = true;
        const bool boundary = i == 0 || !is_word(s[i - 1]);
        if (boundary && is_hex(c) && uuid_at(s, i)) {
            out.put("<uuid>");
            i += 36;
            continue;
        }
        if (boundary && is_hex(c)) {
            std::size_t j = i;
            bool digit = false;
            while (j < s.size() && is_hex(s[j])) digit |= is_digit(s[j++]);
            if (j - i >= 8 && digit && (j == s.size() || !is_word(s[j]))) {
                out.put("<hex>");
                i = j;
                continue;
            }
        }
        if (is_digit(c)) {
            std::size_t j = i;
            while (j < s.size() &&
                   (is_digit(s[j]) || (s[j] == '.' && j + 1 < s.size() && is_digit(s[j + 1]))))
                ++j;
            out.put("<n>");
            i = j;
            continue;
        }
        if (c == '\'' || c == '"') {
            auto close = s.find(c, i + 1);
            if (close != std::string_view::npos && close - i <= 200) {
                out.put(c);
                out.put("<s>");
                out.put(c);
                i = close + 1;
                continue;
            }
        }
        out.put(c);
        ++i;
    }
}

// The top frame's line (see top_frame), digits still in; empty if none.
std::string_view top_frame_line(std::string_view stack) {
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
        if (line.rfind("at ", 0) == 0) return line;             // Java, .NET
        if (line.rfind("File \"", 0) == 0) last_python = line;  // Python: innermost last
    }
    return last_python;
}

template <class Out>
void without_digits(std::string_view line, Out out) {
    std::size_t from = 0;
    for (std::size_t i = 0; i <= line.size(); ++i) {
        if (i < line.size() && !is_digit(line[i])) continue;
        if (i > from) out.put(line.substr(from, i - from));
        from = i + 1;
    }
}

}  // namespace

std::string normalise_message(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    normalise_into(s, ToString{out});
    return out;
}

std::string top_frame(std::string_view stack) {
    std::string out;
    without_digits(top_frame_line(stack), ToString{out});
    return out;
}

std::string_view fingerprint_into(std::array<char, 16>& digits, std::string_view error_type,
                                  std::string_view message, std::string_view stack) {
    auto h = fnv1a(error_type);
    h = fnv1a("\x1f", h);
    normalise_into(message, ToHash{h});
    h = fnv1a("\x1f", h);
    without_digits(top_frame_line(stack), ToHash{h});
    static constexpr char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; --i) {
        digits[static_cast<std::size_t>(i)] = hex[h & 0xf];
        h >>= 4;
    }
    return {digits.data(), digits.size()};
}

std::string fingerprint(std::string_view error_type, std::string_view message,
                        std::string_view stack) {
    std::array<char, 16> digits;
    return std::string(fingerprint_into(digits, error_type, message, stack));
}

namespace {

// One reading of a letter for Stats and Filter, whether a DeadLetter or a LetterView.
struct OwnedLetter {
    const DeadLetter& d;
    std::string_view fingerprint() const { return d.fingerprint; }
    std::string_view error_type() const { return d.error_type; }
    std::string_view error_message() const { return d.error_message; }
    std::string_view error_stack() const { return d.error_stack; }
    std::string_view original_topic() const { return d.original_topic; }
    std::string_view group() const { return d.group; }
    Convention convention() const { return d.convention; }
    int64_t timestamp_ms() const { return d.record.timestamp_ms; }
    std::string id() const { return d.id(); }
    std::optional<std::string_view> key() const {
        return d.record.key ? std::optional<std::string_view>(*d.record.key) : std::nullopt;
    }
    std::optional<std::string_view> value() const {
        return d.record.value ? std::optional<std::string_view>(*d.record.value) : std::nullopt;
    }
    // nullopt: no such header; a header whose value is null is {nullopt}.
    std::optional<std::optional<std::string_view>> header(std::string_view name) const {
        const auto* h = find_header(d.record.headers, name);
        if (!h) return std::nullopt;
        return h->value ? std::optional<std::string_view>(*h->value) : std::nullopt;
    }
};

struct ViewedLetter {
    const LetterView& v;
    std::string_view fingerprint() const { return v.fingerprint; }
    std::string_view error_type() const { return v.facts.error_type; }
    std::string_view error_message() const { return v.facts.error_message; }
    std::string_view error_stack() const { return v.facts.error_stack; }
    std::string_view original_topic() const { return v.facts.original_topic; }
    std::string_view group() const { return v.facts.group.view(); }
    Convention convention() const { return v.facts.convention; }
    int64_t timestamp_ms() const { return v.record.timestamp_ms; }
    std::string id() const {
        std::string out;
        append_letter_id(out, v.record);
        return out;
    }
    std::optional<std::string_view> key() const { return v.record.key; }
    std::optional<std::string_view> value() const { return v.record.value; }
    std::optional<std::optional<std::string_view>> header(std::string_view name) const {
        const auto* h = v.record.find_header(name);
        if (!h) return std::nullopt;
        return h->value;
    }
};

template <class Tally, class Letter>
void add_to(std::map<std::string, Tally, std::less<>>& groups, const Letter& letter) {
    auto it = groups.find(letter.fingerprint());
    if (it == groups.end()) {
        it = groups.emplace(std::string(letter.fingerprint()), Tally{}).first;
        auto& g = it->second.group;
        g.fingerprint = letter.fingerprint();
        g.error_type = letter.error_type();
        g.message = normalise_message(letter.error_message());
        g.top_frame = top_frame(letter.error_stack());
    }
    auto& tally = it->second;
    auto& g = tally.group;
    ++g.count;
    const auto ts = letter.timestamp_ms();
    if (ts >= 0 && (g.first_seen_ms < 0 || ts < g.first_seen_ms)) g.first_seen_ms = ts;
    if (ts >= 0 && ts > g.last_seen_ms) {  // strictly newer: an id is built rarely
        g.last_seen_ms = ts;
        g.sample_id = letter.id();
    }
    if (g.sample_id.empty()) g.sample_id = letter.id();
    // Looked up before inserting: the sets rarely grow, and a lookup needs no copy.
    if (const auto topic = letter.original_topic();
        !topic.empty() && tally.original_topics.find(topic) == tally.original_topics.end())
        tally.original_topics.emplace(topic);
    if (const auto group = letter.group();
        !group.empty() && tally.groups.find(group) == tally.groups.end())
        tally.groups.emplace(group);
    g.conventions.insert(letter.convention());
}

template <class Letter>
bool matches_letter(const Filter& f, const Letter& d) {
    if (!f.ids.empty() && !f.ids.count(d.id())) return false;
    const auto ts = d.timestamp_ms();
    if (f.since_ms >= 0 && ts < f.since_ms) return false;
    if (f.until_ms >= 0 && ts >= f.until_ms) return false;
    if (f.key && d.key() != std::optional<std::string_view>(*f.key)) return false;
    if (!f.header_name.empty()) {
        const auto h = d.header(f.header_name);
        if (!h) return false;
        if (f.header_value && *h != std::optional<std::string_view>(*f.header_value)) return false;
    }
    if (!f.error_type.empty() && d.error_type().find(f.error_type) == std::string_view::npos)
        return false;
    if (!f.original_topic.empty() && d.original_topic() != f.original_topic) return false;
    if (!f.fingerprint.empty() && d.fingerprint().substr(0, f.fingerprint.size()) != f.fingerprint)
        return false;
    if (!f.text.empty()) {
        const auto value = d.value();
        if (!value || value->find(f.text) == std::string_view::npos) return false;
    }
    return true;
}

}  // namespace

void Stats::add(const DeadLetter& letter) {
    ++total_;
    add_to(groups_, OwnedLetter{letter});
}

void Stats::add(const LetterView& letter) {
    ++total_;
    add_to(groups_, ViewedLetter{letter});
}

std::vector<Group> Stats::groups() const {
    std::vector<Group> out;
    out.reserve(groups_.size());
    for (const auto& [_, tally] : groups_) {
        out.push_back(tally.group);
        out.back().original_topics.insert(tally.original_topics.begin(),
                                          tally.original_topics.end());
        out.back().groups.insert(tally.groups.begin(), tally.groups.end());
    }
    std::sort(out.begin(), out.end(), [](const Group& a, const Group& b) {
        if (a.count != b.count) return a.count > b.count;
        return a.last_seen_ms > b.last_seen_ms;
    });
    return out;
}

bool Filter::matches(const DeadLetter& letter) const {
    return matches_letter(*this, OwnedLetter{letter});
}

bool Filter::matches(const LetterView& letter) const {
    return matches_letter(*this, ViewedLetter{letter});
}

}  // namespace postroom::dlq
