#include "postroom/kafka/consumer.hpp"

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <utility>

#include "common.hpp"
#include "messages.hpp"

namespace postroom::kafka {

using namespace detail;

namespace {

std::vector<TopicPartition> to_vector(const rd_kafka_topic_partition_list_t* list) {
    std::vector<TopicPartition> out;
    if (!list) return out;
    out.reserve(static_cast<std::size_t>(list->cnt));
    for (int i = 0; i < list->cnt; ++i)
        out.push_back({list->elems[i].topic, list->elems[i].partition});
    return out;
}

// Per-partition bookkeeping of what was delivered and what is done.
struct PartitionProgress {
    std::set<int64_t> undone;  // delivered, not yet marked done
    int64_t next_offset = -1;  // offset after the last delivered message; -1 = none yet
    int64_t committed = -1;    // last offset this member committed
    std::optional<int64_t> committable() const {
        if (!undone.empty()) return *undone.begin();
        if (next_offset < 0) return std::nullopt;
        return next_offset;
    }
};

}  // namespace

struct Consumer::Impl : ClientBase {
    ConsumerConfig config;
    ResolvedBroker broker;
    RebalanceListener listener;
    std::exception_ptr callback_error;
    std::atomic<bool> closed{false};
    mutable std::mutex progress_mutex;
    std::map<TopicPartition, PartitionProgress> progress;
    ClientHandle rk;  // last: destroyed first

    void check_open() const {
        if (closed.load()) throw UsageError("the consumer is closed; create a new one");
    }

    void capture(std::exception_ptr e) noexcept {
        if (!callback_error) callback_error = std::move(e);
    }

    void rethrow_callback_error() {
        if (callback_error) std::rethrow_exception(std::exchange(callback_error, nullptr));
    }

    void track_assigned(const std::vector<TopicPartition>& tps) {
        std::lock_guard lock(progress_mutex);
        for (const auto& tp : tps) progress[tp] = PartitionProgress{};
    }

    void forget(const std::vector<TopicPartition>& tps) {
        std::lock_guard lock(progress_mutex);
        for (const auto& tp : tps) progress.erase(tp);
    }

    // Commits the done prefix of `only` (or of every partition when null).
    std::vector<TopicPartitionOffset> commit_done(const std::vector<TopicPartition>* only) {
        std::vector<TopicPartitionOffset> todo;
        {
            std::lock_guard lock(progress_mutex);
            auto consider = [&](const TopicPartition& tp, const PartitionProgress& p) {
                auto c = p.committable();
                if (c && *c > p.committed) todo.push_back({tp.topic, tp.partition, *c});
            };
            if (only) {
                for (const auto& tp : *only)
                    if (auto it = progress.find(tp); it != progress.end()) consider(tp, it->second);
            } else {
                for (const auto& [tp, p] : progress) consider(tp, p);
            }
        }
        if (todo.empty()) return todo;
        PartitionListHandle list(rd_kafka_topic_partition_list_new(static_cast<int>(todo.size())));
        for (const auto& t : todo)
            rd_kafka_topic_partition_list_add(list.get(), t.topic.c_str(), t.partition)->offset =
                t.offset;
        auto err = rd_kafka_commit(rk.get(), list.get(), 0);
        if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) throw_error(err, "commit for " + label);
        for (int i = 0; i < list->cnt; ++i)
            if (list->elems[i].err)
                throw_error(list->elems[i].err, "commit for " + label + " of " +
                                                    std::string(list->elems[i].topic) + "[" +
                                                    std::to_string(list->elems[i].partition) + "]");
        std::lock_guard lock(progress_mutex);
        for (const auto& t : todo)
            if (auto it = progress.find({t.topic, t.partition}); it != progress.end())
                it->second.committed = std::max(it->second.committed, t.offset);
        return todo;
    }

    void call(const std::function<void(const std::vector<TopicPartition>&)>& fn,
              const std::vector<TopicPartition>& tps) noexcept {
        if (!fn) return;
        try {
            fn(tps);
        } catch (...) {
            capture(std::current_exception());
        }
    }

    void rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts) noexcept {
        auto tps = to_vector(parts);
        const bool cooperative =
            std::string_view(rd_kafka_rebalance_protocol(rk.get())) == "COOPERATIVE";
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
            track_assigned(tps);
            if (cooperative) {
                if (auto* e = rd_kafka_incremental_assign(rk.get(), parts)) {
                    capture(std::make_exception_ptr(
                        TransportError(std::string("assign failed: ") + rd_kafka_error_string(e),
                                       Retriable::yes)));
                    rd_kafka_error_destroy(e);
                }
            } else {
                rd_kafka_assign(rk.get(), parts);
            }
            call(listener.on_assigned, tps);
            return;
        }
        // Revoked or lost.
        const bool lost = rd_kafka_assignment_lost(rk.get());
        if (lost) {
            call(listener.on_lost, tps);
        } else {
            call(listener.on_revoked, tps);
            try {
                commit_done(&tps);
            } catch (...) {
                capture(std::current_exception());
            }
        }
        forget(tps);
        if (cooperative) {
            if (auto* e = rd_kafka_incremental_unassign(rk.get(), parts)) rd_kafka_error_destroy(e);
        } else {
            rd_kafka_assign(rk.get(), nullptr);
        }
    }

    static void rebalance_cb(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t* parts, void* opaque) noexcept {
        (void)rk;
        static_cast<Impl*>(static_cast<ClientBase*>(opaque))->rebalance(err, parts);
    }

    // Whether a consumed rd_kafka_message_t is a record; handles it when it is an error.
    bool usable(const rd_kafka_message_t& msg) {
        if (!msg.err) return true;
        if (msg.err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return false;
        std::string where =
            msg.rkt ? std::string(" on topic '") + rd_kafka_topic_name(msg.rkt) + "'" : "";
        if (msg.err == RD_KAFKA_RESP_ERR__FATAL) {
            char errstr[512];
            rd_kafka_fatal_error(rk.get(), errstr, sizeof errstr);
            throw_error(RD_KAFKA_RESP_ERR__FATAL, label, errstr);
        }
        if (msg.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
            msg.err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
            msg.err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
            msg.err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED)
            throw_error(msg.err, label + where, rd_kafka_message_errstr(&msg));
        // Anything else is transient: librdkafka retries by itself. Say so and go on.
        if (log_handler)
            log_handler(4, "CONSUME", std::string(rd_kafka_message_errstr(&msg)) + where);
        return false;
    }

    // Records a delivered record as not yet done (when tracking).
    void delivered(std::string_view topic, int32_t partition, int64_t offset) {
        if (!config.track_done) return;
        std::lock_guard lock(progress_mutex);
        auto& p = progress[{std::string(topic), partition}];
        p.undone.insert(offset);
        p.next_offset = std::max(p.next_offset, offset + 1);
    }

    // Turns a consumed rd_kafka_message_t into a Message, or handles its error.
    std::optional<Message> take(MessageHandle msg) {
        if (!usable(*msg)) return std::nullopt;
        Message m = detail::to_message(*msg);
        delivered(m.topic, m.partition, m.offset);
        return m;
    }

    // Appends up to `max` consumed rd_kafka_message_t to `owned`, waiting until there are
    // `max` or `timeout` has passed (rd_kafka_consume_batch_queue). They land first in a
    // buffer per thread, kept between polls (a batch of 2,048 would otherwise allocate 16 KiB
    // a poll).
    void consume_into(rd_kafka_queue_t* queue, std::size_t max, std::chrono::milliseconds timeout,
                      std::vector<MessageHandle>& owned) {
        thread_local std::vector<rd_kafka_message_t*> polled;
        polled.resize(max);
        auto n = max > 0 ? rd_kafka_consume_batch_queue(queue, static_cast<int>(timeout.count()),
                                                        polled.data(), max)
                         : 0;
        owned.reserve(owned.size() + (n > 0 ? static_cast<std::size_t>(n) : 0));
        for (ssize_t i = 0; i < n; ++i) owned.emplace_back(polled[static_cast<std::size_t>(i)]);
        rethrow_callback_error();
    }

    // Up to `max` consumed rd_kafka_message_t, waiting until there are `max` or `timeout` has
    // passed.
    std::vector<MessageHandle> consume(std::size_t max, std::chrono::milliseconds timeout) {
        QueueHandle queue(rd_kafka_queue_get_consumer(rk.get()));
        std::vector<MessageHandle> owned;
        consume_into(queue.get(), max, timeout, owned);
        return owned;
    }

    // Up to `max` consumed rd_kafka_message_t: waits at most `timeout` for the first, then
    // takes what is queued without waiting for more (rd_kafka_consume_batch_queue alone waits
    // until the batch is full or the timeout has passed).
    std::vector<MessageHandle> consume_available(std::size_t max,
                                                 std::chrono::milliseconds timeout) {
        QueueHandle queue(rd_kafka_queue_get_consumer(rk.get()));
        std::vector<MessageHandle> owned;
        MessageHandle first(rd_kafka_consume_queue(queue.get(), static_cast<int>(timeout.count())));
        if (first) {
            owned.push_back(std::move(first));
            consume_into(queue.get(), max - 1, std::chrono::milliseconds(0), owned);
        }
        rethrow_callback_error();
        return owned;
    }
};

Consumer::Consumer(ConsumerConfig config) : impl_(std::make_unique<Impl>()) {
    auto& impl = *impl_;
    impl.config = std::move(config);
    auto& c = impl.config;
    if (c.group_id.empty())
        throw ConfigurationError(
            "consumer group_id is required (the group whose offsets are committed)");
    for (const char* forbidden : {"enable.auto.commit", "enable.auto.offset.store", "group.id",
                                  "rebalance_cb", "bootstrap.servers"})
        if (c.properties.count(forbidden))
            throw ConfigurationError(std::string("consumer property '") + forbidden +
                                     "' is managed by postroom (it commits only what is marked "
                                     "done); use the ConsumerConfig fields instead");
    impl.label = "consumer of group '" + c.group_id + "'";
    impl.log_handler = c.log_handler;
    impl.broker = resolve(c.broker_url);
    ConfBuilder conf;
    conf.set("bootstrap.servers", impl.broker.bootstrap_servers)
        .set("client.id", c.client_id)
        .set("group.id", c.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", c.offset_reset == OffsetReset::earliest ? "earliest" : "latest")
        .set("session.timeout.ms", milliseconds(c.session_timeout))
        .set("max.poll.interval.ms", milliseconds(c.max_poll_interval));
    conf.set_all(c.properties);
    rd_kafka_conf_set_rebalance_cb(conf.get(), &Impl::rebalance_cb);
    impl.rk = conf.create(RD_KAFKA_CONSUMER, &impl);
    rd_kafka_poll_set_consumer(impl.rk.get());
}

Consumer::~Consumer() {
    if (impl_) {
        try {
            close();
        } catch (...) {
            // Destructors do not throw; close() explicitly to see errors.
        }
    }
}

Consumer::Consumer(Consumer&&) noexcept = default;
Consumer& Consumer::operator=(Consumer&&) noexcept = default;

const ConsumerConfig& Consumer::config() const noexcept {
    return impl_->config;
}

void Consumer::subscribe(const std::vector<std::string>& topics, RebalanceListener listener) {
    impl_->check_open();
    if (topics.empty()) throw UsageError("subscribe needs at least one topic");
    impl_->listener = std::move(listener);
    PartitionListHandle list(rd_kafka_topic_partition_list_new(static_cast<int>(topics.size())));
    for (const auto& t : topics) {
        if (t.empty()) throw UsageError("empty topic name in subscribe");
        rd_kafka_topic_partition_list_add(list.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
    }
    if (auto err = rd_kafka_subscribe(impl_->rk.get(), list.get()))
        throw_error(err, "subscribe of " + impl_->label);
}

void Consumer::assign(const std::vector<TopicPartitionOffset>& partitions) {
    impl_->check_open();
    PartitionListHandle list(
        rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size())));
    std::vector<TopicPartition> tps;
    for (const auto& p : partitions) {
        rd_kafka_topic_partition_list_add(list.get(), p.topic.c_str(), p.partition)->offset =
            p.offset;
        tps.push_back({p.topic, p.partition});
    }
    {
        std::lock_guard lock(impl_->progress_mutex);
        impl_->progress.clear();
    }
    impl_->track_assigned(tps);
    if (auto err = rd_kafka_assign(impl_->rk.get(), list.get()))
        throw_error(err, "assign of " + impl_->label);
}

std::optional<Message> Consumer::poll(std::chrono::milliseconds timeout) {
    impl_->check_open();
    MessageHandle msg(rd_kafka_consumer_poll(impl_->rk.get(), static_cast<int>(timeout.count())));
    impl_->rethrow_callback_error();
    if (!msg) return std::nullopt;
    return impl_->take(std::move(msg));
}

std::vector<Message> Consumer::poll_batch(std::size_t max_messages,
                                          std::chrono::milliseconds timeout) {
    impl_->check_open();
    std::vector<Message> out;
    if (max_messages == 0) return out;
    auto owned = impl_->consume(max_messages, timeout);
    out.reserve(owned.size());
    for (auto& m : owned)
        if (auto message = impl_->take(std::move(m))) out.push_back(std::move(*message));
    return out;
}

MessageBatch Consumer::poll_views(std::size_t max_messages, std::chrono::milliseconds timeout) {
    impl_->check_open();
    if (max_messages == 0) return {};
    auto owned = impl_->consume_available(max_messages, timeout);
    std::erase_if(owned, [&](const MessageHandle& m) { return !impl_->usable(*m); });
    for (const auto& m : owned)
        impl_->delivered(m->rkt ? rd_kafka_topic_name(m->rkt) : "", m->partition, m->offset);
    return detail::to_batch(std::move(owned));
}

void Consumer::mark_done(const Message& message) {
    mark_done(message.topic_partition(), message.offset);
}

void Consumer::mark_done(const TopicPartition& partition, int64_t offset) {
    std::lock_guard lock(impl_->progress_mutex);
    auto it = impl_->progress.find(partition);
    // A partition that was revoked meanwhile is someone else's now: nothing to record.
    if (it == impl_->progress.end()) return;
    it->second.undone.erase(offset);
}

std::vector<TopicPartitionOffset> Consumer::commit() {
    impl_->check_open();
    return impl_->commit_done(nullptr);
}

std::vector<TopicPartitionOffset> Consumer::committed(const std::vector<TopicPartition>& partitions,
                                                      std::chrono::milliseconds timeout) {
    impl_->check_open();
    PartitionListHandle list(
        rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size())));
    for (const auto& p : partitions)
        rd_kafka_topic_partition_list_add(list.get(), p.topic.c_str(), p.partition);
    if (auto err =
            rd_kafka_committed(impl_->rk.get(), list.get(), static_cast<int>(timeout.count())))
        throw_error(err, "reading committed offsets of " + impl_->label);
    std::vector<TopicPartitionOffset> out;
    for (int i = 0; i < list->cnt; ++i)
        out.push_back({list->elems[i].topic, list->elems[i].partition, list->elems[i].offset});
    return out;
}

void Consumer::seek(const TopicPartition& partition, int64_t offset,
                    std::chrono::milliseconds timeout) {
    impl_->check_open();
    PartitionListHandle list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), partition.topic.c_str(), partition.partition)
        ->offset = offset;
    if (auto* e = rd_kafka_seek_partitions(impl_->rk.get(), list.get(),
                                           static_cast<int>(timeout.count())))
        throw_error(e, "seek of " + impl_->label);
    if (list->elems[0].err)
        throw_error(list->elems[0].err, "seek of " + impl_->label + " on " + partition.topic + "[" +
                                            std::to_string(partition.partition) + "]");
    std::lock_guard lock(impl_->progress_mutex);
    if (auto it = impl_->progress.find(partition); it != impl_->progress.end()) {
        // Messages at or after the new position will be delivered again; those before it
        // stay undone until marked, so the commit never passes them.
        auto& p = it->second;
        if (offset >= 0) {
            p.undone.erase(p.undone.lower_bound(offset), p.undone.end());
            p.next_offset = offset;
        } else {
            p.undone.clear();
            p.next_offset = -1;
        }
    }
}

namespace {
PartitionListHandle partition_list(const std::vector<TopicPartition>& partitions) {
    PartitionListHandle list(
        rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size())));
    for (const auto& p : partitions)
        rd_kafka_topic_partition_list_add(list.get(), p.topic.c_str(), p.partition);
    return list;
}
}  // namespace

void Consumer::pause(const std::vector<TopicPartition>& partitions) {
    impl_->check_open();
    if (partitions.empty()) return;
    auto list = partition_list(partitions);
    if (auto err = rd_kafka_pause_partitions(impl_->rk.get(), list.get()))
        throw_error(err, "pause of " + impl_->label);
}

void Consumer::resume(const std::vector<TopicPartition>& partitions) {
    impl_->check_open();
    if (partitions.empty()) return;
    auto list = partition_list(partitions);
    if (auto err = rd_kafka_resume_partitions(impl_->rk.get(), list.get()))
        throw_error(err, "resume of " + impl_->label);
}

std::vector<TopicPartition> Consumer::assignment() const {
    impl_->check_open();
    rd_kafka_topic_partition_list_t* raw = nullptr;
    if (auto err = rd_kafka_assignment(impl_->rk.get(), &raw))
        throw_error(err, "assignment of " + impl_->label);
    PartitionListHandle list(raw);
    return to_vector(list.get());
}

std::map<TopicPartition, int64_t> Consumer::lag() const {
    std::map<TopicPartition, int64_t> out;
    if (closed()) return out;
    auto parts = assignment();
    if (parts.empty()) return out;
    PartitionListHandle list(rd_kafka_topic_partition_list_new(static_cast<int>(parts.size())));
    for (const auto& p : parts)
        rd_kafka_topic_partition_list_add(list.get(), p.topic.c_str(), p.partition);
    rd_kafka_position(impl_->rk.get(), list.get());
    for (int i = 0; i < list->cnt; ++i) {
        const auto& e = list->elems[i];
        int64_t low = -1, high = -1;
        int64_t lag = -1;
        if (rd_kafka_get_watermark_offsets(impl_->rk.get(), e.topic, e.partition, &low, &high) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            high >= 0) {
            int64_t position = e.offset >= 0 ? e.offset : -1;
            if (position < 0) {
                // Nothing fetched yet: count from the committed offset if we know it.
                std::lock_guard lock(impl_->progress_mutex);
                auto it = impl_->progress.find({e.topic, e.partition});
                if (it != impl_->progress.end() && it->second.next_offset >= 0)
                    position = it->second.next_offset;
            }
            if (position >= 0) lag = std::max<int64_t>(0, high - position);
        }
        out[{e.topic, e.partition}] = lag;
    }
    return out;
}

std::size_t Consumer::outstanding() const {
    std::lock_guard lock(impl_->progress_mutex);
    std::size_t n = 0;
    for (const auto& [tp, p] : impl_->progress) n += p.undone.size();
    return n;
}

void Consumer::close() {
    if (!impl_ || impl_->closed.load()) return;
    std::exception_ptr first;
    try {
        impl_->commit_done(nullptr);
    } catch (...) {
        first = std::current_exception();
    }
    impl_->closed.store(true);
    // Leaves the group; the rebalance callback runs for the final revoke.
    rd_kafka_consumer_close(impl_->rk.get());
    impl_->rk.reset();
    if (!first) first = std::exchange(impl_->callback_error, nullptr);
    if (first) std::rethrow_exception(first);
}

bool Consumer::closed() const noexcept {
    return !impl_ || impl_->closed.load();
}

}  // namespace postroom::kafka
