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
#include <deque>
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

// The replies of commands sent with Connection::send(), collected later.
struct SentCommands {
    std::size_t count = 0;
    std::vector<ReplyHandle> replies;  // filled when read (by collect() or a later command)
    std::string lost;                  // why the replies will never come, if so
};

class Connection {
public:
    explicit Connection(Address address,
                        std::chrono::milliseconds timeout = std::chrono::seconds(5));

    ReplyHandle command(const Command& args);
    // All of `commands` in one round trip; replies in order.
    std::vector<ReplyHandle> pipeline(const std::vector<Command>& commands);
    // Sends `commands` and returns without waiting, so the caller can work meanwhile;
    // collect() waits for their replies. Redis runs commands in the order they arrive, so
    // whatever is sent afterwards on this connection runs after them. A command sent later
    // reads these replies first and keeps them for collect().
    std::shared_ptr<SentCommands> send(const std::vector<Command>& commands);
    // The replies of `sent`, in order. Throws TransportError if the connection was lost
    // before they were read: whether the commands ran is then unknown.
    std::vector<ReplyHandle> collect(SentCommands& sent);
    // For a blocking command (XREADGROUP BLOCK): the socket waits this long for the reply.
    void set_read_timeout(std::chrono::milliseconds timeout);
    // Drops the connection; the next command connects again.
    void reset() noexcept { drop(); }
    bool connected() const noexcept { return context_ != nullptr; }
    const Address& address() const noexcept { return address_; }

private:
    void connect();
    [[noreturn]] void fail(const std::string& what);
    // Formats `commands` into hiredis's output buffer.
    void append(const std::vector<Command>& commands);
    // Reads the replies of earlier send()s, oldest first, through `last` (all if null).
    void read_sent(const SentCommands* last);
    // Closes the connection; replies still unread are lost.
    void drop() noexcept;
    void check_outage(const std::vector<ReplyHandle>& replies) const;
    std::deque<std::shared_ptr<SentCommands>> unread_;
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
