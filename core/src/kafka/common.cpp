#include "common.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "postroom/broker_url.hpp"
#include "postroom/embedded/broker.hpp"
#include "postroom/redact.hpp"

namespace postroom::kafka::detail {

Retriable retriable(rd_kafka_resp_err_t err) noexcept {
    switch (err) {
        case RD_KAFKA_RESP_ERR__TRANSPORT:
        case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
        case RD_KAFKA_RESP_ERR__RESOLVE:
        case RD_KAFKA_RESP_ERR__TIMED_OUT:
        case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
        case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
        case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        case RD_KAFKA_RESP_ERR__WAIT_COORD:
        case RD_KAFKA_RESP_ERR__IN_PROGRESS:
        case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
        case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
        case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
        case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
        case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
        case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
        case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
        case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
        case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
        case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
        case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
        case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
        case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE: return Retriable::yes;
        case RD_KAFKA_RESP_ERR__FATAL:
        case RD_KAFKA_RESP_ERR__INVALID_ARG:
        case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_INVALID_RECORD:
        case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
        case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
        case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR__AUTHENTICATION:
        case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
        case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
        case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
        case RD_KAFKA_RESP_ERR__DESTROY: return Retriable::no;
        default: return Retriable::unknown;
    }
}

std::exception_ptr make_error(rd_kafka_resp_err_t err, std::string_view context,
                              std::string_view detail) {
    std::string message(context);
    message += ": ";
    message += detail.empty() ? rd_kafka_err2str(err) : std::string(detail);
    message += " (";
    message += rd_kafka_err2name(err);
    message += ")";
    const int code = static_cast<int>(err);
    switch (err) {
        case RD_KAFKA_RESP_ERR__TIMED_OUT:
        case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
        case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
        case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
            return std::make_exception_ptr(
                TimeoutError(message + "; is the broker running and reachable?", code));
        case RD_KAFKA_RESP_ERR__TRANSPORT:
        case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
        case RD_KAFKA_RESP_ERR__RESOLVE:
            return std::make_exception_ptr(TransportError(
                message + "; cannot reach the broker: check that it is running and that the "
                          "URL's host and port are right",
                Retriable::yes, code));
        case RD_KAFKA_RESP_ERR__FATAL:
            return std::make_exception_ptr(
                FatalClientError(message + "; close this client and create a new one", code));
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
            return std::make_exception_ptr(
                UsageError(message + "; create the topic first (postroom does not rely on "
                                     "topic auto-creation)",
                           code));
        case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
        case RD_KAFKA_RESP_ERR__INVALID_ARG:
        case RD_KAFKA_RESP_ERR__STATE:
        case RD_KAFKA_RESP_ERR__CONFLICT:
        case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
        case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
        case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
        case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
        case RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED:
            return std::make_exception_ptr(UsageError(message, code));
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
            return std::make_exception_ptr(
                UsageError(message + "; raise message.max.bytes (client) and "
                                     "max.message.bytes (topic), or send smaller messages",
                           code));
        case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR__AUTHENTICATION:
        case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
        case RD_KAFKA_RESP_ERR__SSL:
            return std::make_exception_ptr(
                ConfigurationError(message + "; check credentials and ACLs", code));
        default: return std::make_exception_ptr(TransportError(message, retriable(err), code));
    }
}

void throw_error(rd_kafka_resp_err_t err, std::string_view context, std::string_view detail) {
    std::rethrow_exception(make_error(err, context, detail));
}

void throw_error(rd_kafka_error_t* raw, std::string_view context) {
    ErrorHandle error(raw);
    auto code = rd_kafka_error_code(error.get());
    if (rd_kafka_error_is_fatal(error.get())) code = RD_KAFKA_RESP_ERR__FATAL;
    throw_error(code, context, rd_kafka_error_string(error.get()));
}

ResolvedBroker resolve(std::string_view broker_url) {
    auto url = parse_broker_url(broker_url);
    switch (url.scheme) {
        case BrokerScheme::kafka: return {url.bootstrap_servers(), nullptr};
        case BrokerScheme::embedded: {
            auto broker = embedded::Broker::shared(url.embedded_name);
            return {broker->bootstrap_servers(), broker};
        }
        case BrokerScheme::redis: break;
    }
    throw ConfigurationError("broker URL '" + redacted_url(broker_url) +
                             "' names a Redis server; Kafka clients need kafka://host:port or "
                             "embedded://");
}

ConfBuilder::ConfBuilder() : conf_(rd_kafka_conf_new()) {}

ConfBuilder& ConfBuilder::set(std::string_view key, std::string_view value) {
    char errstr[512];
    std::string k(key), v(value);
    if (rd_kafka_conf_set(conf_.get(), k.c_str(), v.c_str(), errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK)
        throw ConfigurationError("Kafka client property '" + k + "': " + errstr);
    return *this;
}

ConfBuilder& ConfBuilder::set_all(const Properties& properties) {
    for (const auto& [k, v] : properties) set(k, v);
    return *this;
}

namespace {

std::mutex stderr_mutex;

int level_from_environment() noexcept {
    const char* v = std::getenv("POSTROOM_LOG_LEVEL");
    if (!v || !*v) return 4;
    std::string_view s(v);
    if (s == "debug") return 7;
    if (s == "info") return 6;
    if (s == "warning") return 4;
    if (s == "error") return 3;
    if (s == "off") return -1;
    if (s.size() == 1 && s[0] >= '0' && s[0] <= '7') return s[0] - '0';
    return 4;
}

std::atomic<int> stderr_level{level_from_environment()};

void log_cb(const rd_kafka_t* rk, int level, const char* facility, const char* buf) noexcept {
    auto* owner = static_cast<ClientBase*>(rd_kafka_opaque(rk));
    try {
        if (owner && owner->intercept_log(level, facility, buf)) return;
        if (owner && owner->log_handler) {
            owner->log_handler(level, facility, buf);
            return;
        }
        if (level <= stderr_level.load(std::memory_order_relaxed)) {
            std::lock_guard lock(stderr_mutex);
            std::fprintf(stderr, "postroom level=%s client=\"%s\" facility=%s msg=\"%s\"\n",
                         level <= 3   ? "error"
                         : level <= 4 ? "warning"
                         : level <= 6 ? "info"
                                      : "debug",
                         owner ? owner->label.c_str() : "", facility, buf);
        }
    } catch (...) {
        // A log handler must not unwind through librdkafka.
    }
}

}  // namespace

ClientHandle ConfBuilder::create(rd_kafka_type_t type, ClientBase* owner) {
    rd_kafka_conf_set_opaque(conf_.get(), owner);
    rd_kafka_conf_set_log_cb(conf_.get(), log_cb);
    char errstr[512];
    rd_kafka_t* rk = rd_kafka_new(type, conf_.get(), errstr, sizeof errstr);
    if (!rk) throw ConfigurationError("cannot create Kafka " + owner->label + ": " + errstr);
    conf_.release();  // rd_kafka_new took ownership
    return ClientHandle(rk);
}

}  // namespace postroom::kafka::detail

namespace postroom::kafka {

void set_default_log_level(int level) noexcept {
    detail::stderr_level.store(level);
}
int default_log_level() noexcept {
    return detail::stderr_level.load();
}

}  // namespace postroom::kafka

namespace postroom::kafka::detail {

std::string milliseconds(std::chrono::milliseconds ms) {
    return std::to_string(ms.count());
}

}  // namespace postroom::kafka::detail
