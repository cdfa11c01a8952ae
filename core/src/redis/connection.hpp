#pragma once
// One hiredis connection, shared by the Redis idempotency store and the Redis Streams
// transport: URL parsing (redis://[:password@]host:port/db), connect with AUTH and SELECT,
// single commands and pipelines, and one translation of hiredis failures into postroom errors.
//
// A lost connection throws TransportError (retriable) and is dropped; the next command
// connects again. Error replies are returned to the caller (is_error()), except
// authentication refusals, which throw ConfigurationError.
//
// Thread-safety: none; the owner serialises access.

#include <hiredis/hiredis.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "../detail/deleter.hpp"

namespace postroom::redis::detail {

inline void free_reply(redisReply* r) {
    freeReplyObject(r);
}
using ContextHandle = std::unique_ptr<redisContext, postroom::detail::Deleter<redisFree>>;
using ReplyHandle = std::unique_ptr<redisReply, postroom::detail::Deleter<free_reply>>;

struct Address {
    std::string host;
    int port = 6379;
    int db = 0;
    std::string password;

    // Throws ConfigurationError naming `who` unless `url` is redis://[:password@]host:port/db.
    static Address from_url(const std::string& url, std::string_view who);
    std::string where() const { return "Redis at " + host + ":" + std::to_string(port); }
};

using Command = std::vector<std::string>;

class Connection {
public:
    explicit Connection(Address address,
                        std::chrono::milliseconds timeout = std::chrono::seconds(5));

    ReplyHandle command(const Command& args);
    // All of `commands` in one round trip; replies in order.
    std::vector<ReplyHandle> pipeline(const std::vector<Command>& commands);
    // For a blocking command (XREADGROUP BLOCK): the socket waits this long for the reply.
    void set_read_timeout(std::chrono::milliseconds timeout);
    // Drops the connection; the next command connects again.
    void reset() noexcept { context_.reset(); }
    bool connected() const noexcept { return context_ != nullptr; }
    const Address& address() const noexcept { return address_; }

private:
    void connect();
    [[noreturn]] void fail(const std::string& what);
    Address address_;
    std::chrono::milliseconds timeout_;
    std::chrono::milliseconds read_timeout_;
    ContextHandle context_;
};

inline bool is_error(const redisReply* r) noexcept {
    return r->type == REDIS_REPLY_ERROR;
}
inline std::string text(const redisReply* r) {
    return r->str ? std::string(r->str, r->len) : std::string();
}

}  // namespace postroom::redis::detail
