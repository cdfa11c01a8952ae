#pragma once
// Shared plumbing of the Kafka clients: error translation (the one place librdkafka codes
// become postroom errors), configuration building, broker URL resolution.

#include <exception>
#include <memory>
#include <string>
#include <string_view>

#include "handles.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/config.hpp"

namespace postroom::embedded {
class Broker;
}

namespace postroom::kafka::detail {

// The one translation from librdkafka error codes to postroom's taxonomy.
std::exception_ptr make_error(rd_kafka_resp_err_t err, std::string_view context,
                              std::string_view detail = {});
[[noreturn]] void throw_error(rd_kafka_resp_err_t err, std::string_view context,
                              std::string_view detail = {});
// Consumes (destroys) the rd_kafka_error_t.
[[noreturn]] void throw_error(rd_kafka_error_t* error, std::string_view context);
Retriable retriable(rd_kafka_resp_err_t err) noexcept;

// A broker URL resolved to bootstrap servers; keeps an embedded broker alive while a
// client uses it.
struct ResolvedBroker {
    std::string bootstrap_servers;
    std::shared_ptr<embedded::Broker> embedded;  // set for embedded://
};
ResolvedBroker resolve(std::string_view broker_url);

// What every client Impl starts with: it is librdkafka's opaque pointer, so C callbacks
// find their owner through it. Declare the ClientHandle member last in the Impl so the
// handle is destroyed while this base is still alive.
struct ClientBase {
    LogHandler log_handler;
    std::string label;  // "producer", "consumer group 'x'", ... for messages
    virtual ~ClientBase() = default;
    // Sees every log line first (on librdkafka's threads); true = swallowed, internal.
    virtual bool intercept_log(int /*level*/, std::string_view /*facility*/,
                               std::string_view /*message*/) noexcept {
        return false;
    }
};

// Builds a conf from key/value pairs; the error names the bad key.
class ConfBuilder {
public:
    ConfBuilder();
    ConfBuilder& set(std::string_view key, std::string_view value);
    ConfBuilder& set_all(const Properties& properties);
    rd_kafka_conf_t* get() const noexcept { return conf_.get(); }
    // Hands the conf to rd_kafka_new (which takes ownership on success), with `owner` as
    // opaque and its log handler wired in.
    ClientHandle create(rd_kafka_type_t type, ClientBase* owner);

private:
    ConfHandle conf_;
};

std::string milliseconds(std::chrono::milliseconds ms);

}  // namespace postroom::kafka::detail
