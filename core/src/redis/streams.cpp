#include "postroom/redis/streams.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <deque>
#include <iostream>
#include <mutex>
#include <set>
#include <thread>

#include "connection.hpp"
#include "fields.hpp"
#include "postroom/error.hpp"

namespace postroom::redis {

using detail::Command;
using detail::Connection;
using detail::ReplyHandle;
using detail::text;

namespace {

// XADDs a batch: ARGV holds, per entry, the count of its XADD arguments, then the arguments
// (stream, options, "*", fields). Returns per entry its id, or the error Redis gave for it.
constexpr const char* add_script = R"lua(
local out, i = {}, 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  out[#out + 1] = redis.pcall('XADD', unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return out
)lua";

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

Fields fields_of(const redisReply* r) {
    Fields f;
    if (!r || r->type != REDIS_REPLY_ARRAY) return f;
    f.reserve(r->elements / 2);
    for (std::size_t i = 0; i + 1 < r->elements; i += 2)
        f.emplace_back(text(r->element[i]), text(r->element[i + 1]));
    return f;
}

int64_t integer_field(const redisReply* map, std::string_view name, int64_t fallback) {
    for (std::size_t i = 0; i + 1 < map->elements; i += 2)
        if (text(map->element[i]) == name) {
            const auto* v = map->element[i + 1];
            if (v->type == REDIS_REPLY_INTEGER) return v->integer;
            return fallback;
        }
    return fallback;
}

std::string string_field(const redisReply* map, std::string_view name) {
    for (std::size_t i = 0; i + 1 < map->elements; i += 2)
        if (text(map->element[i]) == name) return text(map->element[i + 1]);
    return {};
}

[[noreturn]] void refused(const std::string& where, const std::string& what, const redisReply* r) {
    throw UsageError(where + ": " + what + " refused: " + text(r));
}

std::vector<PendingEntry> pending_of(const redisReply* r) {
    std::vector<PendingEntry> out;
    if (r->type != REDIS_REPLY_ARRAY) return out;
    for (std::size_t i = 0; i < r->elements; ++i) {
        const auto* e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 4) continue;
        out.push_back({text(e->element[0]), text(e->element[1]), e->element[2]->integer,
                       e->element[3]->integer});
    }
    return out;
}

}  // namespace

// ---------------------------------------------------------------- producer

kafka::DeliveryReport AddResult::report() const {
    kafka::DeliveryReport out;
    out.partition = 0;
    if (ok()) {
        out.id = id;
        out.persistence = kafka::Persistence::persisted;
    } else {
        out.error_text = error;
    }
    return out;
}

struct StreamProducer::Impl {
    explicit Impl(StreamProducerConfig c)
        : config(std::move(c)),
          connection(detail::Address::from_url(config.url, "the Redis Streams producer"),
                     config.timeout) {}
    StreamProducerConfig config;
    mutable std::mutex mutex;
    Connection connection;
    bool closed = false;

    // Batches sent without waiting, oldest first: their script calls and where each call's
    // entries start in the batch.
    struct InFlight {
        std::shared_ptr<kafka::BatchDelivery> delivery;
        std::vector<std::shared_ptr<detail::SentCommands>> calls;
        std::vector<std::size_t> firsts;
    };
    std::deque<InFlight> in_flight;
    std::size_t entries_in_flight = 0;

    // One script call per chunk of 1,000 instead of a pipeline of XADDs: Redis runs it in one
    // turn of its event loop, so with appendfsync always a chunk costs one fsync, not one per
    // 16 KB of commands read. Chunks keep the commands' memory bounded.
    static constexpr std::size_t chunk = 1000;
    std::vector<Command> scripts(const std::vector<OutgoingMessage>& messages) const {
        std::vector<Command> calls;
        for (std::size_t i = 0; i < messages.size(); i += chunk) {
            Command eval{"EVAL", add_script, "0"};
            const auto end = std::min(messages.size(), i + chunk);
            eval.reserve(3 + (end - i) * 5);
            for (std::size_t k = i; k < end; ++k) append_xadd(eval, messages[k]);
            calls.push_back(std::move(eval));
        }
        return calls;
    }

    // The results of one script call of `entries` entries, from its reply.
    static std::vector<AddResult> results_of(const redisReply* reply, std::size_t entries) {
        std::vector<AddResult> out;
        out.reserve(entries);
        if (detail::is_error(reply)) {
            for (std::size_t k = 0; k < entries; ++k) out.push_back({"", text(reply)});
            return out;
        }
        for (std::size_t k = 0; k < reply->elements; ++k) {
            const auto* r = reply->element[k];
            if (detail::is_error(r))
                out.push_back({"", text(r)});
            else
                out.push_back({text(r), ""});
        }
        return out;
    }

    // Reads the replies of the oldest batch in flight and reports its entries. The caller
    // holds `mutex`.
    void report_oldest() {
        auto batch = std::move(in_flight.front());
        in_flight.pop_front();
        auto& delivery = *batch.delivery;
        entries_in_flight -= delivery.size();
        for (std::size_t c = 0; c < batch.calls.size(); ++c) {
            const auto first = batch.firsts[c];
            const auto end = c + 1 < batch.firsts.size() ? batch.firsts[c + 1] : delivery.size();
            std::vector<AddResult> results;
            try {
                auto replies = connection.collect(*batch.calls[c]);
                results = results_of(replies.front().get(), end - first);
            } catch (const TransportError& e) {
                results.assign(end - first,
                               {"", std::string(e.what()) + "; the entry may or may not have "
                                                            "been added"});
            }
            for (std::size_t k = first; k < end; ++k)
                delivery.report(k, results[k - first].report());
        }
    }

    // Appends one entry to the arguments of add_script: the count of its XADD arguments,
    // then the arguments (stream, trimming, "*", fields).
    void append_xadd(Command& out, const OutgoingMessage& m) const {
        if (m.topic.empty()) throw UsageError("a message needs a stream name (its topic)");
        if (m.partition && *m.partition != 0)
            throw UsageError("stream '" + m.topic + "' has no partition " +
                             std::to_string(*m.partition) + ": a Redis stream is partition 0");
        const std::size_t count = out.size();
        out.emplace_back();
        out.push_back(m.topic);
        if (config.maxlen) out.insert(out.end(), {"MAXLEN", "~", std::to_string(*config.maxlen)});
        out.emplace_back("*");
        auto fields = detail::entry_fields(m);
        for (auto& [k, v] : fields) {
            out.push_back(std::move(k));
            out.push_back(std::move(v));
        }
        out[count] = std::to_string(out.size() - count - 1);
    }
};

StreamProducer::StreamProducer(StreamProducerConfig config)
    : impl_(std::make_unique<Impl>(std::move(config))) {
    if (impl_->config.maxlen && *impl_->config.maxlen == 0)
        throw ConfigurationError("maxlen must be positive (or unset to keep every entry)");
}

StreamProducer::~StreamProducer() {
    if (!impl_) return;
    try {
        flush();  // batches sent without waiting get their reports
    } catch (...) {
        // Destructors do not throw; close() explicitly to see errors.
    }
}

std::string StreamProducer::add(const OutgoingMessage& message) {
    auto results = add_batch({message});
    if (!results.front().ok())
        throw UsageError(impl_->connection.address().where() + ": XADD to '" + message.topic +
                         "' refused: " + results.front().error);
    return results.front().id;
}

std::vector<AddResult> StreamProducer::add_batch(const std::vector<OutgoingMessage>& messages) {
    auto calls = impl_->scripts(messages);
    std::lock_guard lock(impl_->mutex);
    if (impl_->closed) throw UsageError("the producer is closed");
    std::vector<AddResult> out;
    out.reserve(messages.size());
    for (std::size_t c = 0; c < calls.size(); ++c) {
        const std::size_t entries = std::min(Impl::chunk, messages.size() - c * Impl::chunk);
        auto reply = impl_->connection.command(calls[c]);
        for (auto& r : Impl::results_of(reply.get(), entries)) out.push_back(std::move(r));
    }
    return out;
}

std::shared_ptr<kafka::BatchDelivery> StreamProducer::send_batch(
    std::vector<OutgoingMessage> messages) {
    auto calls = impl_->scripts(messages);
    std::lock_guard lock(impl_->mutex);
    if (impl_->closed) throw UsageError("the producer is closed");
    Impl::InFlight batch;
    for (std::size_t c = 0; c < calls.size(); ++c) {
        batch.firsts.push_back(c * Impl::chunk);
        batch.calls.push_back(impl_->connection.send({calls[c]}));
    }
    batch.delivery = kafka::BatchDelivery::awaiting(std::move(messages));
    auto delivery = batch.delivery;
    impl_->entries_in_flight += delivery->size();
    impl_->in_flight.push_back(std::move(batch));
    return delivery;
}

void StreamProducer::wait(const kafka::BatchDelivery& batch) {
    std::lock_guard lock(impl_->mutex);
    while (!batch.done() && !impl_->in_flight.empty()) impl_->report_oldest();
}

void StreamProducer::flush() {
    std::lock_guard lock(impl_->mutex);
    while (!impl_->in_flight.empty()) impl_->report_oldest();
}

std::size_t StreamProducer::in_flight() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->entries_in_flight;
}

void StreamProducer::send(const OutgoingMessage& message, std::chrono::milliseconds) {
    add(message);
}

void StreamProducer::close() {
    std::lock_guard lock(impl_->mutex);
    while (!impl_->in_flight.empty()) impl_->report_oldest();
    impl_->closed = true;
    impl_->connection.reset();
}

// ---------------------------------------------------------------- consumer

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

// ---------------------------------------------------------------- admin

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
