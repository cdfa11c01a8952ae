#pragma once
// Configuration of postroom's Kafka clients: plain structs with defaults, validated when a
// client is constructed (the error names the bad key). `properties` passes librdkafka
// settings through unchanged, for anything the struct does not name.

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace postroom::kafka {

using Properties = std::map<std::string, std::string>;

// Receives librdkafka's log lines. Called from librdkafka's internal threads: it must be
// thread-safe and must not call back into the client. syslog levels: 3 error .. 7 debug.
using LogHandler =
    std::function<void(int level, std::string_view facility, std::string_view message)>;

// Clients without a log_handler print librdkafka's lines at or below this syslog level to
// stderr as one structured line each. Default 4 (warnings and errors), or the value of the
// POSTROOM_LOG_LEVEL environment variable (a number, or debug/info/warning/error/off).
void set_default_log_level(int level) noexcept;
int default_log_level() noexcept;

struct ProducerConfig {
    std::string broker_url = "embedded://";
    std::string client_id = "postroom";
    // enable.idempotence: retries never duplicate or reorder within a producer session.
    bool idempotent = true;
    std::string acks = "all";
    std::string compression = "none";  // none, gzip, snappy, lz4, zstd
    std::chrono::milliseconds linger{5};
    // How long librdkafka keeps trying one message before reporting it failed.
    std::chrono::milliseconds delivery_timeout{30'000};
    // How long close() and the destructor wait for in-flight messages.
    std::chrono::milliseconds close_timeout{10'000};
    Properties properties;
    LogHandler log_handler;  // default: warnings and errors to stderr
};

enum class OffsetReset { earliest, latest };

struct ConsumerConfig {
    std::string broker_url = "embedded://";
    std::string client_id = "postroom";
    std::string group_id;  // required
    // Where a group with no committed offset starts.
    OffsetReset offset_reset = OffsetReset::earliest;
    std::chrono::milliseconds session_timeout{10'000};
    std::chrono::milliseconds max_poll_interval{300'000};
    // How long close() waits for the final commit and leaving the group.
    std::chrono::milliseconds close_timeout{10'000};
    // false: a reader that never commits (scans by tools): delivered messages are not
    // tracked as undone, which saves a set insert per message; commit() commits nothing.
    bool track_done = true;
    Properties properties;
    LogHandler log_handler;
};

struct AdminConfig {
    std::string broker_url = "embedded://";
    std::string client_id = "postroom-admin";
    std::chrono::milliseconds timeout{15'000};
    Properties properties;
    LogHandler log_handler;
};

}  // namespace postroom::kafka
