// StreamConsumer: a member of a consumer group. Reads its own pending entries, then claims
// entries idle in other consumers (XAUTOCLAIM), then reads new ones (XREADGROUP ">");
// delivery counts from the pending list, acknowledgement (XACK) of what is done, entries
// deleted while pending reported and acknowledged, NOGROUP recovered by recreating the group.
// Over 500 lines for a reason: reads, claims, acknowledgements and recovery all move the same
// per-stream cursors and the same in-hand and rewound sets of one Impl; split across files,
// that one state machine could no longer be read in one place.
#include "postroom/redis/streams.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <iostream>
#include <mutex>
#include <set>
#include <thread>

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
using detail::string_field;
using detail::text;

namespace {

// The group is gone (NOGROUP): recovered by the consumer, never surfaced.
struct GroupMissing : std::runtime_error {
    using std::runtime_error::runtime_error;
};

bool starts_with(std::string_view s, std::string_view p) {
    return s.compare(0, p.size(), p) == 0;
}

std::pair<uint64_t, uint64_t> parse_id(const std::string& id) {
    auto dash = id.find('-');
    uint64_t ms = 0, seq = 0;
    std::from_chars(id.data(), id.data() + std::min(dash, id.size()), ms);
    if (dash != std::string::npos)
        std::from_chars(id.data() + dash + 1, id.data() + id.size(), seq);
    return {ms, seq};
}

// The id just before `id` ("5-3" -> "5-2", "5-0" -> "4-18446744073709551615").
std::string predecessor(const std::string& id) {
    auto [ms, seq] = parse_id(id);
    if (seq > 0) return std::to_string(ms) + "-" + std::to_string(seq - 1);
    if (ms == 0) return "0-0";
    return std::to_string(ms - 1) + "-18446744073709551615";
}

std::string hostname() {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return "host";
    return buf;
}

void default_log(int level, const std::string& line) {
    if (level <= 4) std::cerr << line << '\n';
}

}  // namespace

struct StreamConsumer::Impl {
    explicit Impl(StreamConsumerConfig c)
        : config(std::move(c)),
          connection(detail::Address::from_url(config.url, "the Redis Streams consumer"),
                     config.timeout) {}

    struct Stream {
        std::string name;
        std::string cursor = "0";  // an id: reading our own pending entries; ">": new ones
        bool paused = false;
    };

    StreamConsumerConfig config;
    Connection connection;
    std::vector<Stream> streams;
    transport::RebalanceListener listener;
    bool closed = false;
    std::chrono::steady_clock::time_point next_claim{};
    std::chrono::steady_clock::time_point next_lag{};
    std::chrono::milliseconds reconnect_backoff{100};

    mutable std::mutex mutex;  // done, lags, counts
    std::map<std::string, std::vector<std::string>> done;
    // Delivered in this session and not yet acknowledged: a claim or a read of our pending
    // list must not hand them out a second time while they are being worked on.
    std::map<std::string, std::set<std::string>> in_hand;
    // Deliveries this consumer caused itself with redeliver_from() (holding an entry that is
    // not yet due): not counted in Message::delivery_count, which is about crashed holders.
    std::map<std::string, std::map<std::string, int32_t>> rewound;
    std::map<TopicPartition, int64_t> lags;
    StreamConsumerCounters counts;

    std::string where() const { return connection.address().where(); }

    void log(int level, const std::string& line) const {
        (config.log ? config.log : default_log)(level, line);
    }

    Stream* find(const std::string& name) {
        for (auto& s : streams)
            if (s.name == name) return &s;
        return nullptr;
    }

    void create_group(const std::string& stream) {
        auto r = connection.command(
            {"XGROUP", "CREATE", stream, config.group, config.start_id, "MKSTREAM"});
        if (detail::is_error(r.get()) && !starts_with(text(r.get()), "BUSYGROUP"))
            throw ConfigurationError(where() + ": cannot create group '" + config.group +
                                     "' on stream '" + stream + "' from id '" + config.start_id +
                                     "': " + text(r.get()));
    }

    // Idle members of the group without pending entries are removed; never one that holds
    // pending entries (that would drop them).
    void remove_idle_consumers(const std::string& stream) {
        auto r = connection.command({"XINFO", "CONSUMERS", stream, config.group});
        if (r->type != REDIS_REPLY_ARRAY) return;
        for (std::size_t i = 0; i < r->elements; ++i) {
            const auto* c = r->element[i];
            auto name = string_field(c, "name");
            if (name == config.consumer) continue;
            if (integer_field(c, "pending", 1) == 0 &&
                integer_field(c, "idle", 0) > 24LL * 3600 * 1000)
                connection.command({"XGROUP", "DELCONSUMER", stream, config.group, name});
        }
    }

    // What a NOGROUP error means here, said loudly, and the way back.
    void recover_group(const std::string& why) {
        log(2, "postroom redis consumer: " + why + " -- the consumer group '" + config.group +
                   "' is gone (Redis restarted without its data, or the group was deleted); "
                   "recreating it from id " +
                   config.start_id +
                   ": entries are delivered again from there, duplicates are absorbed by "
                   "the idempotency store");
        for (auto& s : streams) {
            create_group(s.name);
            s.cursor = "0";
        }
        std::lock_guard lock(mutex);
        ++counts.groups_recreated;
        done.clear();
        in_hand.clear();
        rewound.clear();
    }

    Message message_of(const std::string& stream, const redisReply* entry, int32_t deliveries) {
        auto m = from_fields(stream, text(entry->element[0]), fields_of(entry->element[1]));
        m.delivery_count = deliveries;
        return m;
    }

    int32_t rewinds_of(const std::string& stream, const std::string& id) {
        std::lock_guard lock(mutex);
        auto s = rewound.find(stream);
        if (s == rewound.end()) return 0;
        auto it = s->second.find(id);
        return it == s->second.end() ? 0 : it->second;
    }

    // Records `id` as in hand; false when it already was (then it is not delivered again).
    bool take_in_hand(const std::string& stream, const std::string& id) {
        std::lock_guard lock(mutex);
        return in_hand[stream].insert(id).second;
    }

    // Entries whose fields are nil were deleted (trimmed, XDEL) while pending: report them
    // and acknowledge them, so they do not stay stuck in the pending list.
    void report_deleted(const std::string& stream, const std::vector<std::string>& ids) {
        if (ids.empty()) return;
        Command ack{"XACK", stream, config.group};
        ack.insert(ack.end(), ids.begin(), ids.end());
        connection.command(ack);
        std::string list;
        for (std::size_t i = 0; i < ids.size() && i < 10; ++i) list += (i ? "," : "") + ids[i];
        log(3, "postroom redis consumer: " + std::to_string(ids.size()) +
                   " pending entries of stream '" + stream +
                   "' were deleted before they were processed (trimmed or XDEL): " + list +
                   (ids.size() > 10 ? ",..." : "") + " -- they cannot be delivered");
        std::lock_guard lock(mutex);
        counts.deleted_while_pending += static_cast<int64_t>(ids.size());
    }

    // Delivery counts of our pending entries from `first` to `last` of `stream`.
    std::map<std::string, int32_t> deliveries(const std::string& stream, const std::string& first,
                                              const std::string& last, std::size_t count) {
        std::map<std::string, int32_t> out;
        auto r = connection.command({"XPENDING", stream, config.group, first, last,
                                     std::to_string(count), config.consumer});
        for (const auto& p : pending_of(r.get())) out[p.id] = static_cast<int32_t>(p.deliveries);
        return out;
    }

    std::vector<Message> claim(std::size_t max) {
        std::vector<Message> out;
        for (auto& s : streams) {
            if (s.paused || out.size() >= max) continue;
            auto r = connection.command({"XAUTOCLAIM", s.name, config.group, config.consumer,
                                         std::to_string(config.claim_min_idle.count()), "0-0",
                                         "COUNT", std::to_string(max - out.size())});
            if (detail::is_error(r.get())) {
                if (starts_with(text(r.get()), "NOGROUP")) throw GroupMissing(text(r.get()));
                refused(where(), "XAUTOCLAIM", r.get());
            }
            if (r->type != REDIS_REPLY_ARRAY || r->elements < 2) continue;
            const auto* entries = r->element[1];
            if (r->elements >= 3) {
                std::vector<std::string> gone;
                for (std::size_t i = 0; i < r->element[2]->elements; ++i)
                    gone.push_back(text(r->element[2]->element[i]));
                report_deleted(s.name, gone);
            }
            if (entries->elements == 0) continue;
            auto counts_of = deliveries(s.name, text(entries->element[0]->element[0]),
                                        text(entries->element[entries->elements - 1]->element[0]),
                                        entries->elements);
            std::size_t got = 0;
            for (std::size_t i = 0; i < entries->elements; ++i) {
                const auto* e = entries->element[i];
                if (e->type != REDIS_REPLY_ARRAY || e->elements < 2) continue;
                auto id = text(e->element[0]);
                if (!take_in_hand(s.name, id)) continue;
                out.push_back(message_of(s.name, e, counts_of.count(id) ? counts_of[id] : 2));
                ++got;
            }
            if (got) {
                log(4, "postroom redis consumer: claimed " + std::to_string(got) +
                           " entries of stream '" + s.name + "' pending longer than " +
                           std::to_string(config.claim_min_idle.count()) +
                           " ms in other consumers of group '" + config.group + "'");
                std::lock_guard lock(mutex);
                counts.claimed += static_cast<int64_t>(got);
            }
        }
        return out;
    }

    // One XREADGROUP over `which` streams at their cursors.
    std::vector<Message> read(std::vector<Stream*> which, std::size_t max,
                              std::optional<std::chrono::milliseconds> block) {
        std::vector<Message> out;
        if (which.empty()) return out;
        Command c{"XREADGROUP",    "GROUP", config.group,
                  config.consumer, "COUNT", std::to_string(max)};
        if (block)
            c.insert(c.end(), {"BLOCK", std::to_string(std::max<int64_t>(1, block->count()))});
        c.emplace_back("STREAMS");
        for (auto* s : which) c.push_back(s->name);
        for (auto* s : which) c.push_back(s->cursor);
        if (block) connection.set_read_timeout(*block + config.timeout);
        auto r = connection.command(c);
        if (block) connection.set_read_timeout(config.timeout);
        if (detail::is_error(r.get())) {
            if (starts_with(text(r.get()), "NOGROUP")) throw GroupMissing(text(r.get()));
            refused(where(), "XREADGROUP", r.get());
        }
        std::map<std::string, const redisReply*> by_stream;
        if (r->type == REDIS_REPLY_ARRAY)
            for (std::size_t i = 0; i < r->elements; ++i)
                by_stream[text(r->element[i]->element[0])] = r->element[i]->element[1];
        for (auto* s : which) {
            auto it = by_stream.find(s->name);
            const bool history = s->cursor != ">";
            if (it == by_stream.end() || it->second->elements == 0) {
                if (history) s->cursor = ">";  // our pending list is read through
                continue;
            }
            const auto* entries = it->second;
            std::map<std::string, int32_t> counts_of;
            if (history)
                counts_of = deliveries(s->name, text(entries->element[0]->element[0]),
                                       text(entries->element[entries->elements - 1]->element[0]),
                                       entries->elements);
            std::vector<std::string> gone;
            for (std::size_t i = 0; i < entries->elements; ++i) {
                const auto* e = entries->element[i];
                auto id = text(e->element[0]);
                if (history) s->cursor = id;
                if (e->element[1]->type != REDIS_REPLY_ARRAY) {
                    gone.push_back(id);
                    continue;
                }
                if (!take_in_hand(s->name, id)) continue;
                int32_t n = 1;
                if (history) n = counts_of.count(id) ? counts_of[id] : 2;
                out.push_back(message_of(s->name, e, std::max(1, n - rewinds_of(s->name, id))));
            }
            report_deleted(s->name, gone);
        }
        return out;
    }

    void refresh_lag() {
        std::map<TopicPartition, int64_t> fresh;
        for (const auto& s : streams) {
            auto r = connection.command({"XINFO", "GROUPS", s.name});
            int64_t lag = -1;
            if (r->type == REDIS_REPLY_ARRAY)
                for (std::size_t i = 0; i < r->elements; ++i)
                    if (string_field(r->element[i], "name") == config.group)
                        lag = integer_field(r->element[i], "lag", -1);
            fresh[{s.name, 0}] = lag;
        }
        std::lock_guard lock(mutex);
        lags = std::move(fresh);
    }

    // Our own pending entries first, then entries claimed from idle consumers, then new
    // ones.
    std::vector<Message> poll(std::size_t max, std::chrono::milliseconds timeout) {
        auto out = poll_in_order(max, timeout);
        const auto now = std::chrono::steady_clock::now();
        if (now >= next_lag) {
            refresh_lag();
            next_lag = now + std::chrono::seconds(1);
        }
        return out;
    }

    std::vector<Message> poll_in_order(std::size_t max, std::chrono::milliseconds timeout) {
        std::vector<Stream*> history;
        for (auto& s : streams)
            if (!s.paused && s.cursor != ">") history.push_back(&s);
        auto out = read(history, max, std::nullopt);
        if (!out.empty()) return out;
        const auto now = std::chrono::steady_clock::now();
        if (now >= next_claim) {
            out = claim(max);
            next_claim = now + config.claim_interval;
            if (!out.empty()) return out;
        }
        std::vector<Stream*> fresh;
        for (auto& s : streams)
            if (!s.paused && s.cursor == ">") fresh.push_back(&s);
        if (fresh.empty()) {
            std::this_thread::sleep_for(std::min(timeout, std::chrono::milliseconds(100)));
            return out;
        }
        return read(fresh, max, timeout);
    }
};

StreamConsumer::StreamConsumer(StreamConsumerConfig config)
    : impl_(std::make_unique<Impl>(std::move(config))) {
    auto& c = impl_->config;
    if (c.group.empty()) throw ConfigurationError("a Redis Streams consumer needs a group");
    if (c.consumer.empty())
        c.consumer = c.client_id + "-" + hostname() + "-" + std::to_string(getpid());
    if (c.claim_min_idle.count() <= 0 || c.claim_interval.count() <= 0)
        throw ConfigurationError("claim_min_idle and claim_interval must be positive");
}

StreamConsumer::~StreamConsumer() {
    try {
        close();
    } catch (...) {
        // Destructors do not throw; close() explicitly to see errors.
    }
}

void StreamConsumer::subscribe(const std::vector<std::string>& streams,
                               transport::RebalanceListener listener) {
    if (streams.empty()) throw UsageError("subscribe needs at least one stream");
    auto& impl = *impl_;
    impl.streams.clear();
    std::vector<TopicPartition> assigned;
    for (const auto& s : streams) {
        impl.create_group(s);
        impl.remove_idle_consumers(s);
        impl.streams.push_back({s, "0", false});
        assigned.push_back({s, 0});
    }
    impl.listener = std::move(listener);
    if (impl.listener.on_assigned) impl.listener.on_assigned(assigned);
}

std::vector<Message> StreamConsumer::poll_batch(std::size_t max_messages,
                                                std::chrono::milliseconds timeout) {
    auto& impl = *impl_;
    if (impl.closed) throw UsageError("the consumer is closed");
    if (impl.streams.empty()) throw UsageError("subscribe before polling");
    if (max_messages == 0) max_messages = 1;
    try {
        auto out = impl.poll(max_messages, timeout);
        impl.reconnect_backoff = std::chrono::milliseconds(100);
        return out;
    } catch (const GroupMissing& nogroup) {
        impl.recover_group(nogroup.what());
    } catch (const TransportError& e) {
        // Whatever was delivered but not yet seen here is in our pending list: read it again.
        for (auto& s : impl.streams) s.cursor = "0";
        {
            std::lock_guard lock(impl.mutex);
            ++impl.counts.reconnects;
        }
        impl.log(3, std::string("postroom redis consumer: ") + e.what() + "; retrying in " +
                        std::to_string(impl.reconnect_backoff.count()) + " ms");
        std::this_thread::sleep_for(std::min(impl.reconnect_backoff, timeout));
        impl.reconnect_backoff =
            std::min(impl.reconnect_backoff * 2, std::chrono::milliseconds(5000));
    }
    return {};
}

void StreamConsumer::mark_done(const Message& message) {
    std::lock_guard lock(impl_->mutex);
    impl_->done[message.topic].push_back(message.id);
}

std::size_t StreamConsumer::commit() {
    auto& impl = *impl_;
    std::map<std::string, std::vector<std::string>> done;
    {
        std::lock_guard lock(impl.mutex);
        done.swap(impl.done);
    }
    if (done.empty()) return 0;
    std::vector<Command> commands;
    std::size_t n = 0;
    for (const auto& [stream, ids] : done) {
        Command c{"XACK", stream, impl.config.group};
        c.insert(c.end(), ids.begin(), ids.end());
        n += ids.size();
        commands.push_back(std::move(c));
    }
    try {
        for (auto& r : impl.connection.pipeline(commands)) {
            if (!detail::is_error(r.get())) continue;
            // NOGROUP: the group is gone; the next read recreates it and reads everything
            // again, so there is nothing left to acknowledge.
            if (starts_with(text(r.get()), "NOGROUP")) continue;
            refused(impl.where(), "XACK", r.get());
        }
    } catch (const TransportError& e) {
        // Unacknowledged entries stay pending: they are acknowledged at the next commit, or
        // delivered again after a restart (and skipped as duplicates).
        std::lock_guard lock(impl.mutex);
        for (auto& [stream, ids] : done) {
            auto& mine = impl.done[stream];
            mine.insert(mine.begin(), ids.begin(), ids.end());
        }
        impl.log(3, std::string("postroom redis consumer: acknowledgement postponed: ") + e.what());
        return 0;
    }
    std::lock_guard lock(impl.mutex);
    impl.counts.acked += static_cast<int64_t>(n);
    for (const auto& [stream, ids] : done) {
        auto& held = impl.in_hand[stream];
        auto& rewinds = impl.rewound[stream];
        for (const auto& id : ids) {
            held.erase(id);
            rewinds.erase(id);
        }
    }
    return n;
}

void StreamConsumer::redeliver_from(const Message& message) {
    commit();  // what is done must not come back
    auto* s = impl_->find(message.topic);
    if (!s) return;
    s->cursor = predecessor(message.id);
    const auto from = parse_id(message.id);
    std::lock_guard lock(impl_->mutex);
    auto& held = impl_->in_hand[message.topic];
    auto& rewinds = impl_->rewound[message.topic];
    for (auto it = held.begin(); it != held.end();) {
        if (parse_id(*it) >= from) {
            ++rewinds[*it];
            it = held.erase(it);
        } else {
            ++it;
        }
    }
}

void StreamConsumer::pause(const std::vector<TopicPartition>& streams) {
    for (const auto& tp : streams)
        if (auto* s = impl_->find(tp.topic)) s->paused = true;
}

void StreamConsumer::resume(const std::vector<TopicPartition>& streams) {
    for (const auto& tp : streams)
        if (auto* s = impl_->find(tp.topic)) s->paused = false;
}

std::map<TopicPartition, int64_t> StreamConsumer::lag() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->lags;
}

void StreamConsumer::close() {
    if (!impl_ || impl_->closed) return;
    impl_->closed = true;
    commit();
    impl_->connection.reset();
}

const std::string& StreamConsumer::consumer_name() const noexcept {
    return impl_->config.consumer;
}

StreamConsumerCounters StreamConsumer::counters() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->counts;
}

}  // namespace postroom::redis
