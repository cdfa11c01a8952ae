#pragma once
// The one error taxonomy of postroom. Every failure that crosses the public API is a
// postroom::Error of one of the kinds below, and says whether retrying can help.
//
// Thread-safety: errors are immutable values; safe to copy across threads.

#include <stdexcept>
#include <string>
#include <string_view>

namespace postroom {

enum class ErrorKind {
    configuration,  // bad URL, bad option, missing setting: fix the configuration
    transport,      // the broker or network misbehaved (connection, timeout, broker error)
    fatal_client,   // the client is unusable from now on: close it and create a new one
    storage,        // a database failed (serialization conflict, commit in doubt, ...)
    codec,          // an event or message could not be encoded or decoded
    usage,          // the API was used the wrong way (closed client, unknown topic, ...)
};

enum class Retriable { yes, no, unknown };

std::string_view to_string(ErrorKind kind) noexcept;
std::string_view to_string(Retriable retriable) noexcept;

class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, Retriable retriable, const std::string& message, int code = 0)
        : std::runtime_error(message), kind_(kind), retriable_(retriable), code_(code) {}

    ErrorKind kind() const noexcept { return kind_; }
    Retriable retriable() const noexcept { return retriable_; }
    // The backend's own error code (a librdkafka rd_kafka_resp_err_t, ...) or 0.
    int code() const noexcept { return code_; }

private:
    ErrorKind kind_;
    Retriable retriable_;
    int code_;
};

class ConfigurationError : public Error {
public:
    explicit ConfigurationError(const std::string& message, int code = 0)
        : Error(ErrorKind::configuration, Retriable::no, message, code) {}
};

class TransportError : public Error {
public:
    TransportError(const std::string& message, Retriable retriable, int code = 0)
        : Error(ErrorKind::transport, retriable, message, code) {}
};

// A bounded wait ran out. Retrying may succeed once the broker answers again.
class TimeoutError : public TransportError {
public:
    explicit TimeoutError(const std::string& message, int code = 0)
        : TransportError(message, Retriable::yes, code) {}
};

class FatalClientError : public Error {
public:
    explicit FatalClientError(const std::string& message, int code = 0)
        : Error(ErrorKind::fatal_client, Retriable::no, message, code) {}
};

class StorageError : public Error {
public:
    StorageError(const std::string& message, Retriable retriable, int code = 0)
        : Error(ErrorKind::storage, retriable, message, code) {}
};

// An event or message is malformed. attribute() names the offending CloudEvents
// attribute (or header / field) when there is one.
class CodecError : public Error {
public:
    CodecError(std::string attribute, const std::string& message)
        : Error(ErrorKind::codec, Retriable::no, message), attribute_(std::move(attribute)) {}
    const std::string& attribute() const noexcept { return attribute_; }

private:
    std::string attribute_;
};

class UsageError : public Error {
public:
    explicit UsageError(const std::string& message, int code = 0)
        : Error(ErrorKind::usage, Retriable::no, message, code) {}
};

}  // namespace postroom
