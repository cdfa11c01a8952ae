// StreamAdmin: inspection and administration of streams for the tools: the streams there
// are, their length, groups and pending entries, ranges of entries, removal and creation.
// Calls are serialised; a kept connection found stale is opened again once.
#include "postroom/redis/streams.hpp"

#include <algorithm>
#include <mutex>

#include "connection.hpp"
#include "postroom/error.hpp"
#include "replies.hpp"

namespace postroom::redis {

using detail::Command;
using detail::Connection;
using detail::fields_of;
using detail::integer_field;
using detail::pending_of;
using detail::refused;
using detail::ReplyHandle;
using detail::string_field;
using detail::text;

struct StreamAdmin::Impl {
    explicit Impl(const std::string& url)
        : connection(detail::Address::from_url(url, "Redis Streams administration")) {}
    std::mutex mutex;
    Connection connection;

    ReplyHandle command(const Command& c) {
        ReplyHandle r;
        const bool was_connected = connection.connected();
        try {
            r = connection.command(c);
        } catch (const TransportError&) {
            if (!was_connected) throw;
            r = connection.command(c);  // the kept connection had gone stale (server restart)
        }
        if (detail::is_error(r.get())) refused(connection.address().where(), c.front(), r.get());
        return r;
    }
};

StreamAdmin::StreamAdmin(const std::string& url) : impl_(std::make_unique<Impl>(url)) {}
StreamAdmin::~StreamAdmin() = default;

void StreamAdmin::ping() {
    std::lock_guard lock(impl_->mutex);
    impl_->command({"PING"});
}

std::vector<std::string> StreamAdmin::streams() {
    std::lock_guard lock(impl_->mutex);
    std::vector<std::string> out;
    std::string cursor = "0";
    do {
        auto r = impl_->command({"SCAN", cursor, "COUNT", "1000", "TYPE", "stream"});
        cursor = text(r->element[0]);
        for (std::size_t i = 0; i < r->element[1]->elements; ++i)
            out.push_back(text(r->element[1]->element[i]));
    } while (cursor != "0");
    std::sort(out.begin(), out.end());
    return out;
}

bool StreamAdmin::exists(const std::string& stream) {
    std::lock_guard lock(impl_->mutex);
    return text(impl_->command({"TYPE", stream}).get()) == "stream";
}

int64_t StreamAdmin::length(const std::string& stream) {
    std::lock_guard lock(impl_->mutex);
    return impl_->command({"XLEN", stream})->integer;
}

std::vector<GroupInfo> StreamAdmin::groups(const std::string& stream) {
    std::lock_guard lock(impl_->mutex);
    auto r = impl_->command({"XINFO", "GROUPS", stream});
    std::vector<GroupInfo> out;
    for (std::size_t i = 0; i < r->elements; ++i) {
        const auto* g = r->element[i];
        out.push_back({string_field(g, "name"), integer_field(g, "consumers", 0),
                       integer_field(g, "pending", 0), integer_field(g, "lag", -1),
                       string_field(g, "last-delivered-id")});
    }
    return out;
}

std::vector<PendingEntry> StreamAdmin::pending(const std::string& stream, const std::string& group,
                                               std::size_t count) {
    std::lock_guard lock(impl_->mutex);
    return pending_of(
        impl_->command({"XPENDING", stream, group, "-", "+", std::to_string(count)}).get());
}

std::vector<Message> StreamAdmin::range(const std::string& stream, const std::string& start,
                                        const std::string& end, std::size_t count, bool reverse) {
    std::lock_guard lock(impl_->mutex);
    auto r = reverse
                 ? impl_->command({"XREVRANGE", stream, end, start, "COUNT", std::to_string(count)})
                 : impl_->command({"XRANGE", stream, start, end, "COUNT", std::to_string(count)});
    std::vector<Message> out;
    out.reserve(r->elements);
    for (std::size_t i = 0; i < r->elements; ++i) {
        const auto* e = r->element[i];
        out.push_back(from_fields(stream, text(e->element[0]), fields_of(e->element[1])));
    }
    return out;
}

std::size_t StreamAdmin::remove_entries(const std::string& stream,
                                        const std::vector<std::string>& ids) {
    if (ids.empty()) return 0;
    Command c{"XDEL", stream};
    c.insert(c.end(), ids.begin(), ids.end());
    std::lock_guard lock(impl_->mutex);
    return static_cast<std::size_t>(impl_->command(c)->integer);
}

void StreamAdmin::create_stream(const std::string& stream) {
    std::lock_guard lock(impl_->mutex);
    auto type = text(impl_->command({"TYPE", stream}).get());
    if (type == "stream") return;
    if (type != "none")
        throw UsageError(impl_->connection.address().where() + ": key '" + stream + "' holds a " +
                         type + ", not a stream; choose another name");
    impl_->command({"XGROUP", "CREATE", stream, "postroom-create", "$", "MKSTREAM"});
    impl_->command({"XGROUP", "DESTROY", stream, "postroom-create"});
}

void StreamAdmin::remove_stream(const std::string& stream) {
    std::lock_guard lock(impl_->mutex);
    impl_->command({"DEL", stream});
}

}  // namespace postroom::redis
