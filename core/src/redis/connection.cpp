#include "connection.hpp"

#include <charconv>

#include "postroom/broker_url.hpp"
#include "postroom/error.hpp"
#include "postroom/redact.hpp"

namespace postroom::redis::detail {

namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
    return timeval{static_cast<time_t>(ms.count() / 1000),
                   static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
}

// Appends `args` to `out` in the Redis protocol (RESP): an array of bulk strings.
void format(std::string& out, const Command& args) {
    char number[24];
    auto line = [&](char tag, std::size_t n) {
        out += tag;
        out.append(number, std::to_chars(number, number + sizeof number, n).ptr);
        out += "\r\n";
    };
    line('*', args.size());
    for (const auto& a : args) {
        line('$', a.size());
        out += a;
        out += "\r\n";
    }
}

bool is_auth_refusal(const std::string& message) {
    return message.rfind("NOAUTH", 0) == 0 || message.rfind("WRONGPASS", 0) == 0 ||
           message.rfind("ERR invalid password", 0) == 0 ||
           message.rfind("ERR AUTH <password> called without", 0) == 0;
}

}  // namespace

Address Address::from_url(const std::string& url, std::string_view who) {
    auto parsed = parse_broker_url(url);
    if (parsed.scheme != BrokerScheme::redis)
        throw ConfigurationError(std::string(who) + " needs a redis://host:port/db URL, got '" +
                                 redacted_url(url) + "'");
    Address a;
    a.host = parsed.hosts.at(0).host;
    a.port = parsed.hosts.at(0).port;
    a.db = parsed.redis_db;
    auto at = url.find('@');
    auto colon = url.find(':', 8);
    if (at != std::string::npos && colon != std::string::npos && colon < at)
        a.password = url.substr(colon + 1, at - colon - 1);
    return a;
}

Connection::Connection(Address address, std::chrono::milliseconds timeout)
    : address_(std::move(address)), timeout_(timeout), read_timeout_(timeout) {}

void Connection::fail(const std::string& what) {
    std::string why = context_ && context_->err ? context_->errstr : "no reply";
    drop();
    throw TransportError(what + " on " + address_.where() + ": " + why +
                             "; is Redis running and reachable? (postroom reconnects on the "
                             "next attempt)",
                         Retriable::yes);
}

void Connection::connect() {
    context_.reset(
        redisConnectWithTimeout(address_.host.c_str(), address_.port, to_timeval(timeout_)));
    if (!context_ || context_->err) fail("cannot connect");
    redisSetTimeout(context_.get(), to_timeval(read_timeout_));
    auto check = [this](const Command& c) {
        auto r = command(c);
        if (is_error(r.get())) {
            auto message = text(r.get());
            drop();
            if (is_auth_refusal(message))
                throw ConfigurationError(address_.where() + ": " + message +
                                         "; check the password in the URL "
                                         "(redis://:password@host:port/db)");
            throw ConfigurationError(address_.where() + ": " + c.front() + " refused: " + message +
                                     "; check the database number in the URL");
        }
    };
    if (!address_.password.empty()) check({"AUTH", address_.password});
    if (address_.db != 0) check({"SELECT", std::to_string(address_.db)});
}

ReplyHandle Connection::command(const Command& args) {
    auto replies = pipeline({args});
    return std::move(replies.front());
}

void Connection::append(const std::vector<Command>& commands) {
    if (!context_) connect();
    // The whole pipeline formatted in one buffer, handed to hiredis in one append.
    std::size_t size = 0;
    for (const auto& args : commands) {
        size += 16;
        for (const auto& a : args) size += a.size() + 16;
    }
    std::string wire;
    wire.reserve(size);
    for (const auto& args : commands) format(wire, args);
    if (redisAppendFormattedCommand(context_.get(), wire.data(), wire.size()) != REDIS_OK)
        fail(commands.front().front());
}

namespace {

// Reads the next `n` replies into `replies`; false if the connection failed.
bool read_replies(redisContext* context, std::size_t n, std::vector<ReplyHandle>& replies) {
    replies.reserve(replies.size() + n);
    for (std::size_t i = 0; i < n; ++i) {
        void* raw = nullptr;
        if (redisGetReply(context, &raw) != REDIS_OK || !raw) return false;
        replies.emplace_back(static_cast<redisReply*>(raw));
    }
    return true;
}

}  // namespace

std::vector<ReplyHandle> Connection::pipeline(const std::vector<Command>& commands) {
    append(commands);
    read_sent(nullptr);
    std::vector<ReplyHandle> replies;
    replies.reserve(commands.size());
    for (const auto& args : commands) {
        if (!read_replies(context_.get(), 1, replies)) fail(args.front());
        if (is_error(replies.back().get()) && is_auth_refusal(text(replies.back().get()))) {
            drop();  // the rest of the pipeline's replies are not read
            throw ConfigurationError(address_.where() + ": " + text(replies.back().get()) +
                                     "; check the password in the URL "
                                     "(redis://:password@host:port/db)");
        }
    }
    check_outage(replies);
    return replies;
}

std::shared_ptr<SentCommands> Connection::send(const std::vector<Command>& commands) {
    append(commands);
    // hiredis writes its buffer only when a reply is asked for: write it now.
    for (int done = 0; !done;)
        if (redisBufferWrite(context_.get(), &done) != REDIS_OK) fail(commands.front().front());
    auto sent = std::make_shared<SentCommands>();
    sent->count = commands.size();
    unread_.push_back(sent);
    return sent;
}

std::vector<ReplyHandle> Connection::collect(SentCommands& sent) {
    if (sent.replies.size() < sent.count && sent.lost.empty()) {
        try {
            read_sent(&sent);
        } catch (const TransportError&) {
            // The connection failed: `sent` is marked lost, reported below.
        }
    }
    if (!sent.lost.empty())
        throw TransportError(address_.where() +
                                 ": the connection was lost before the replies "
                                 "came (" +
                                 sent.lost + "); whether the commands ran is unknown",
                             Retriable::yes);
    check_outage(sent.replies);
    return std::move(sent.replies);
}

void Connection::read_sent(const SentCommands* last) {
    while (!unread_.empty()) {
        auto sent = unread_.front();
        if (!read_replies(context_.get(), sent->count - sent->replies.size(), sent->replies))
            fail("reading the replies of commands sent earlier");
        unread_.pop_front();
        if (sent.get() == last) return;
    }
}

void Connection::drop() noexcept {
    const std::string why = context_ && context_->err ? context_->errstr : "connection closed";
    for (auto& sent : unread_) sent->lost = why;
    unread_.clear();
    context_.reset();
}

// A server that is starting (LOADING its data) or busy (a long script) answers every command
// with an error for a while: that is an outage to ride out, not a refusal.
void Connection::check_outage(const std::vector<ReplyHandle>& replies) const {
    for (const auto& r : replies)
        if (is_error(r.get())) {
            auto message = text(r.get());
            if (message.rfind("LOADING", 0) == 0 || message.rfind("BUSY ", 0) == 0 ||
                message.rfind("MASTERDOWN", 0) == 0 || message.rfind("TRYAGAIN", 0) == 0)
                throw TransportError(
                    address_.where() + ": " + message + " (postroom retries after a pause)",
                    Retriable::yes);
        }
}

void Connection::set_read_timeout(std::chrono::milliseconds timeout) {
    if (timeout == read_timeout_) return;
    read_timeout_ = timeout;
    if (context_) redisSetTimeout(context_.get(), to_timeval(timeout));
}

}  // namespace postroom::redis::detail
