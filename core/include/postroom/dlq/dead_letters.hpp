#pragma once
// Dead letters from any producer: decoding the header conventions of postroom, Spring Kafka
// (classic dead-letter publishing and @RetryableTopic), Kafka Connect, Kafka Streams,
// Watermill, MassTransit and NServiceBus into one view; error fingerprints; group statistics.
//
// Pure functions and value types: no I/O (reading topics and streams is the transports').
//
// Thread-safety: regular value types; Stats is not synchronised.

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "postroom/message.hpp"

namespace postroom::dlq {

enum class Convention {
    postroom,
    spring,        // kafka_dlt-*
    spring_retry,  // kafka_exception-* / kafka_original-* (@RetryableTopic)
    kafka_connect,
    kafka_streams,
    watermill,
    masstransit,
    nservicebus,
    unknown,  // no known header family: still listed, grouped by "unknown"
};
std::string_view to_string(Convention c) noexcept;

// One dead letter as the tools see it. Absent facts are empty / nullopt.
struct DeadLetter {
    Message record;  // as read from the dead-letter topic or stream
    Convention convention = Convention::unknown;
    std::string error_type;
    std::string error_message;
    std::string error_stack;
    std::string reason;  // postroom's reason (retries-exhausted, ...) when known
    std::string original_topic;
    std::optional<int32_t> original_partition;
    std::string original_offset;  // text: a Kafka offset or a Redis entry id
    std::string group;            // consumer group, handler, connector or endpoint
    std::optional<int64_t> attempts;
    std::string failed_at;  // as the producer wrote it (RFC 3339 or ms since the epoch)
    int replay_count = 0;   // postroom-replay-count
    // A replayed event that failed again: the letter it was replayed from, and the replay
    // (postroom-replayed-from, postroom-replay-id). Empty otherwise.
    std::string replayed_from;
    std::string replay_id;
    // The dead-letter topic could not take the whole value: `record.value` is a prefix of
    // value_length bytes (postroom-dlt-value-truncated, postroom-dlt-value-length); the
    // whole event is at its original topic, partition and offset. Replay leaves such a letter.
    bool value_truncated = false;
    std::optional<int64_t> value_length;
    std::string fingerprint;

    // "<topic>:<partition>:<offset>" (Kafka) or "<stream>:<entry id>" (Redis): stable, used
    // to select letters and in the resolution ledger.
    std::string id() const;
};

// Decodes the headers of `record` (the first convention found wins, postroom's first).
DeadLetter decode(Message record);

// Text a letter's facts borrow from a header, or own when derived from one (a binary
// number written out, two headers joined).
class FactText {
public:
    FactText() = default;
    FactText(std::string_view borrowed) : borrowed_(borrowed) {}  // NOLINT: implicit
    static FactText derived(std::string text) {
        FactText t;
        t.derived_ = std::move(text);
        t.is_derived_ = true;
        return t;
    }
    std::string_view view() const noexcept { return is_derived_ ? derived_ : borrowed_; }
    bool empty() const noexcept { return view().empty(); }

private:
    std::string_view borrowed_;
    std::string derived_;
    bool is_derived_ = false;
};

// What decode finds in a letter's headers, without copying them: valid while they are.
// The same facts as DeadLetter's.
struct LetterFacts {
    Convention convention = Convention::unknown;
    std::string_view error_type;
    std::string_view error_message;
    std::string_view error_stack;
    FactText reason;
    std::string_view original_topic;
    std::optional<int32_t> original_partition;
    FactText original_offset;
    FactText group;
    std::optional<int64_t> attempts;
    FactText failed_at;
    int replay_count = 0;
    std::string_view replayed_from;
    std::string_view replay_id;
    bool value_truncated = false;
    std::optional<int64_t> value_length;
};
LetterFacts decode_facts(std::span<const HeaderView> headers);

// Whether a header describes a failure in one of the conventions decoded here (postroom's
// postroom-dlt-* and postroom-retry-*, Spring's kafka_dlt-*, kafka_exception-*,
// kafka_original-* and retry_topic-*, Kafka Connect's __connect.errors.*, Kafka Streams'
// __streams.errors.*, Watermill's *_poisoned, MassTransit's MT-Fault-*, MT-Reason and
// MT-Host-*, NServiceBus's NServiceBus.ExceptionInfo.*, .FailedQ, .TimeOfFailure,
// .Retries*, .ProcessingEndpoint and .ProcessingMachine). A replay leaves these out, so a
// replayed event does not claim to have failed.
bool is_failure_header(std::string_view name) noexcept;

// A letter read as views: its record, its facts and its fingerprint (16 hex digits).
struct LetterView {
    const MessageView& record;
    const LetterFacts& facts;
    std::string_view fingerprint;
};

// Appends a letter's id (see DeadLetter::id) to `out`.
void append_letter_id(std::string& out, const MessageView& record);

// The error message with what varies between occurrences replaced: UUIDs -> <uuid>, hex
// runs of 8+ -> <hex>, numbers -> <n>, quoted strings -> '<s>'; spaces collapsed.
std::string normalise_message(std::string_view message);
// The first frame of a stack trace ("at pkg.Class.method(File.java:12)", a Python
// traceback's last "File ..., line N, in f" line, ...), without line numbers; "" if none.
std::string top_frame(std::string_view stack);
// 16 hex digits over error type + normalised message + top frame.
std::string fingerprint(std::string_view error_type, std::string_view message,
                        std::string_view stack);
// The same, written into `digits` without allocating; returns a view of them.
std::string_view fingerprint_into(std::array<char, 16>& digits, std::string_view error_type,
                                  std::string_view message, std::string_view stack);

struct Group {
    std::string fingerprint;
    std::string error_type;
    std::string message;  // normalised
    std::string top_frame;
    int64_t count = 0;
    int64_t first_seen_ms = -1;  // record timestamps
    int64_t last_seen_ms = -1;
    std::set<std::string> original_topics;
    std::set<std::string> groups;
    std::set<Convention> conventions;
    std::string sample_id;  // the newest letter of the group
};

class Stats {
public:
    void add(const DeadLetter& letter);
    void add(const LetterView& letter);
    // Largest first, then most recent.
    std::vector<Group> groups() const;
    int64_t total() const noexcept { return total_; }

private:
    // A group as it is counted: its sets are searched by view (no copy per letter).
    struct Tally {
        Group group;
        std::set<std::string, std::less<>> original_topics;
        std::set<std::string, std::less<>> groups;
    };
    std::map<std::string, Tally, std::less<>> groups_;
    int64_t total_ = 0;
};

// Filters for listing, replaying and exporting. Empty fields match everything.
struct Filter {
    int64_t since_ms = -1;  // record timestamp >= since_ms
    int64_t until_ms = -1;  // record timestamp < until_ms
    std::optional<std::string> key;
    std::string header_name;                  // a header that must be present...
    std::optional<std::string> header_value;  // ...with this value, if given
    std::string error_type;                   // substring of the error type
    std::string original_topic;
    std::string fingerprint;  // a group
    std::string text;         // substring of the value
    std::set<std::string> ids;
    bool matches(const DeadLetter& letter) const;
    bool matches(const LetterView& letter) const;
};

}  // namespace postroom::dlq
