#include "postroom/kafka/producer.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <list>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

#include "common.hpp"
#include "postroom/embedded/broker.hpp"

namespace postroom::kafka {

using namespace detail;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------
// Delivery targets: librdkafka's per-message opaque points at one of these.

namespace {

struct DeliveryTarget {
    virtual void delivered(const rd_kafka_message_t& msg) noexcept = 0;
    virtual ~DeliveryTarget() = default;
};

Persistence persistence_of(rd_kafka_msg_status_t status) {
    switch (status) {
        case RD_KAFKA_MSG_STATUS_PERSISTED: return Persistence::persisted;
        case RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED: return Persistence::possibly_persisted;
        default: return Persistence::not_persisted;
    }
}

// A Kafka error as a delivery failure: its code, librdkafka's text and the error it raises.
class KafkaDeliveryFailure final : public DeliveryFailure {
public:
    explicit KafkaDeliveryFailure(rd_kafka_resp_err_t err) : err_(err) {}
    std::string message() const override {
        std::string text = rd_kafka_err2str(err_);
        if (err_ == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
            text +=
                "; raise the topic's max.message.bytes (and the client's message.max.bytes), or "
                "send smaller messages";
        return text;
    }
    Retriable retriable() const noexcept override { return detail::retriable(err_); }
    bool fatal() const noexcept override { return err_ == RD_KAFKA_RESP_ERR__FATAL; }
    [[noreturn]] void raise(const std::string& context) const override {
        throw_error(err_, context);
    }

private:
    rd_kafka_resp_err_t err_;
};

DeliveryReport failed_report(rd_kafka_resp_err_t err) {
    DeliveryReport r;
    r.error_code = static_cast<int>(err);
    r.failure = std::make_shared<KafkaDeliveryFailure>(err);
    return r;
}

DeliveryReport report_of(const rd_kafka_message_t& msg) {
    DeliveryReport r = msg.err ? failed_report(msg.err) : DeliveryReport{};
    r.partition = msg.partition;
    r.offset = msg.offset;
    r.persistence = persistence_of(rd_kafka_message_status(&msg));
    return r;
}

struct CallbackTarget final : DeliveryTarget {
    Producer::DeliveryCallback callback;
    std::exception_ptr* error_sink;
    void delivered(const rd_kafka_message_t& msg) noexcept override {
        if (callback) {
            try {
                callback(report_of(msg));
            } catch (...) {
                if (error_sink && !*error_sink) *error_sink = std::current_exception();
            }
        }
        delete this;
    }
};

// A batch in flight: librdkafka's per-message opaque points at one of its slots.
struct InFlightBatch {
    struct Slot final : DeliveryTarget {
        BatchDelivery* batch = nullptr;
        std::size_t index = 0;
        void delivered(const rd_kafka_message_t& msg) noexcept override {
            batch->report(index, report_of(msg));
        }
    };
    std::shared_ptr<BatchDelivery> batch;
    std::vector<Slot> slots;
};

}  // namespace

// ---------------------------------------------------------------------------------------

struct Producer::Impl : ClientBase {
    ProducerConfig config;
    ResolvedBroker broker;
    std::mutex batches_mutex;
    std::list<InFlightBatch> batches_in_flight;  // kept alive until done
    std::exception_ptr callback_error;           // from a user callback
    std::atomic<bool> closed{false};
    std::atomic<int64_t> producer_id{-1};
    std::size_t max_message_bytes = 1'000'000;  // librdkafka's message.max.bytes
    ClientHandle rk;
    // Topic handles must go before the client: declared after it, destroyed before it.
    std::mutex topics_mutex;
    struct NameHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view name) const noexcept {
            return std::hash<std::string_view>{}(name);
        }
    };
    std::unordered_map<std::string, TopicHandle, NameHash, std::equal_to<>> topic_handles;

    // The cached topic handle (saves librdkafka a locked lookup by name per message).
    rd_kafka_topic_t* topic_handle(std::string_view name) {
        std::lock_guard lock(topics_mutex);
        auto it = topic_handles.find(name);
        if (it == topic_handles.end()) it = topic_handles.emplace(std::string(name), nullptr).first;
        auto& slot = it->second;
        if (!slot) slot.reset(rd_kafka_topic_new(rk.get(), std::string(name).c_str(), nullptr));
        if (!slot) throw_error(rd_kafka_last_error(), "topic '" + std::string(name) + "'");
        return slot.get();
    }

    // The embedded broker would create unknown topics on first use; a real broker
    // (auto-creation off) refuses them. Behave like the real one.
    bool refused_by_embedded(const std::string& topic) {
        return broker.embedded && !broker.embedded->has_topic(topic);
    }

    static void dr_msg_cb(rd_kafka_t* rk, const rd_kafka_message_t* msg, void*) noexcept {
        auto* target = static_cast<DeliveryTarget*>(msg->_private);
        if (!target) return;
        if (msg->err && rd_kafka_fatal_error(rk, nullptr, 0)) {
            // The producer died of this (e.g. an idempotence sequence gap): report it as
            // fatal so the caller recreates the client instead of retrying on it.
            rd_kafka_message_t copy = *msg;
            copy.err = RD_KAFKA_RESP_ERR__FATAL;
            target->delivered(copy);
            return;
        }
        target->delivered(*msg);
    }

    bool user_debug = false;

    bool intercept_log(int level, std::string_view, std::string_view message) noexcept override {
        // With debug=eos, librdkafka logs the producer id it acquired; that is the proof
        // that idempotence is live on this connection.
        if (level >= 7 && config.idempotent) {
            auto at = message.find("PID{Id:");
            if (at != std::string_view::npos) {
                auto digits = message.substr(at + 7);
                int64_t id = 0;
                bool any = false;
                for (char c : digits) {
                    if (c < '0' || c > '9') break;
                    id = id * 10 + (c - '0');
                    any = true;
                }
                if (any) producer_id.store(id);
            }
            // Internal debug we enabled ourselves: do not pass it on unless asked.
            return !user_debug;
        }
        return false;
    }

    void check_open() const {
        if (closed.load()) throw UsageError("the producer is closed; create a new one");
    }

    void rethrow_callback_error() {
        if (callback_error) {
            auto e = std::exchange(callback_error, nullptr);
            std::rethrow_exception(e);
        }
    }

    void check_fatal() {
        char errstr[512];
        auto err = rd_kafka_fatal_error(rk.get(), errstr, sizeof errstr);
        if (err) throw_error(RD_KAFKA_RESP_ERR__FATAL, "producer", errstr);
    }

    void prune_batches() {
        std::lock_guard lock(batches_mutex);
        batches_in_flight.remove_if([](const auto& b) { return b.batch->done(); });
    }

    // The fast path for a batch of header-less messages to one topic with key-chosen
    // partitions: librdkafka's rd_kafka_produce_batch, one call per chunk. Returns false
    // (nothing queued) when the batch does not qualify.
    bool enqueue_batch(InFlightBatch& flight) {
        auto& batch = *flight.batch;
        const auto& msgs = batch.messages();
        if (msgs.empty()) return true;
        const std::string& topic = msgs.front().topic;
        for (const auto& m : msgs)
            if (!m.headers.empty() || m.partition || m.topic != topic) return false;
        auto fail = [&](std::size_t i, rd_kafka_resp_err_t err) {
            batch.report(i, failed_report(err));
        };
        if (refused_by_embedded(topic)) {
            for (std::size_t i = 0; i < msgs.size(); ++i) fail(i, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC);
            return true;
        }
        rd_kafka_topic_t* rkt = topic_handle(topic);
        constexpr std::size_t chunk = 10'000;
        std::vector<rd_kafka_message_t> raw;
        for (std::size_t start = 0; start < msgs.size(); start += chunk) {
            const std::size_t count = std::min(chunk, msgs.size() - start);
            raw.assign(count, rd_kafka_message_t{});
            for (std::size_t k = 0; k < count; ++k) {
                const auto& m = msgs[start + k];
                auto& r = raw[k];
                if (m.value) {
                    r.payload = const_cast<char*>(m.value->data());
                    r.len = m.value->size();
                }
                if (m.key) {
                    r.key = const_cast<char*>(m.key->data());
                    r.key_len = m.key->size();
                }
                r._private = &flight.slots[start + k];
            }
            std::size_t done = 0;
            while (done < count) {
                for (std::size_t k = done; k < count; ++k) raw[k].err = RD_KAFKA_RESP_ERR_NO_ERROR;
                rd_kafka_produce_batch(rkt, RD_KAFKA_PARTITION_UA, 0, raw.data() + done,
                                       static_cast<int>(count - done));
                // Once the local queue is full it stays full until reports are served on
                // this thread, so the refused messages are a suffix: serve, then retry it.
                std::size_t next = count;
                for (std::size_t k = done; k < count; ++k) {
                    if (raw[k].err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        next = k;
                        break;
                    }
                    if (raw[k].err) fail(start + k, raw[k].err);
                }
                if (next < count) rd_kafka_poll(rk.get(), 5);
                done = next;
            }
        }
        return true;
    }

    // Queues one message (an OutgoingMessage or an OutgoingView); retries while the local
    // queue is full. Returns the immediate error, if librdkafka refused it outright.
    template <class M>
    rd_kafka_resp_err_t enqueue(const M& m, void* opaque, bool copy) {
        const std::string_view topic_name(m.topic);
        if (broker.embedded && !broker.embedded->has_topic(std::string(topic_name)))
            return RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
        rd_kafka_topic_t* rkt = topic_handle(topic_name);
        for (;;) {
            rd_kafka_headers_t* headers = nullptr;
            if (!m.headers.empty()) {
                headers = rd_kafka_headers_new(m.headers.size());
                for (const auto& h : m.headers)
                    rd_kafka_header_add(headers, h.name.data(), static_cast<ssize_t>(h.name.size()),
                                        h.value ? h.value->data() : nullptr,
                                        h.value ? static_cast<ssize_t>(h.value->size()) : 0);
            }
            // The RD_KAFKA_V_* macros cast their arguments: pass plain variables.
            const int32_t partition = m.partition ? *m.partition : RD_KAFKA_PARTITION_UA;
            const int flags = copy ? RD_KAFKA_MSG_F_COPY : 0;
            void* value = m.value ? const_cast<char*>(m.value->data()) : nullptr;
            const size_t value_size = m.value ? m.value->size() : 0;
            const void* key = m.key ? m.key->data() : nullptr;
            const size_t key_size = m.key ? m.key->size() : 0;
            auto err =
                rd_kafka_producev(rk.get(), RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
                                  RD_KAFKA_V_MSGFLAGS(flags), RD_KAFKA_V_VALUE(value, value_size),
                                  RD_KAFKA_V_KEY(key, key_size), RD_KAFKA_V_HEADERS(headers),
                                  RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                if (headers) rd_kafka_headers_destroy(headers);
                rd_kafka_poll(rk.get(), 5);  // serve delivery reports to make room
                continue;
            }
            if (err && headers) rd_kafka_headers_destroy(headers);  // ours again on failure
            return err;
        }
    }

    // Queues every message of `batch` (whose reports and slots are sized), one by one:
    // `message(i)` gives the i-th.
    template <class Get>
    void enqueue_each(InFlightBatch& flight, std::size_t n, Get message, bool copy) {
        auto& batch = *flight.batch;
        for (std::size_t i = 0; i < n; ++i) {
            auto err = enqueue(message(i), &flight.slots[i], copy);
            if (!err) continue;
            if (err == RD_KAFKA_RESP_ERR__FATAL) {
                // Nothing after this can be queued: fail the rest of the batch too.
                for (std::size_t k = i; k < n; ++k) batch.report(k, failed_report(err));
                break;
            }
            batch.report(i, failed_report(err));
        }
    }

    // Keeps `batch` (awaiting its reports) alive until they are in, with a slot per message.
    InFlightBatch& track(std::shared_ptr<BatchDelivery> batch) {
        InFlightBatch flight;
        flight.slots.resize(batch->size());
        for (std::size_t i = 0; i < flight.slots.size(); ++i) {
            flight.slots[i].batch = batch.get();
            flight.slots[i].index = i;
        }
        flight.batch = std::move(batch);
        std::lock_guard lock(batches_mutex);
        batches_in_flight.push_back(std::move(flight));
        return batches_in_flight.back();
    }
};

Producer::Producer(ProducerConfig config) : impl_(std::make_unique<Impl>()) {
    auto& impl = *impl_;
    impl.config = std::move(config);
    auto& c = impl.config;
    if (c.delivery_timeout.count() <= 0)
        throw ConfigurationError("producer delivery_timeout must be positive");
    if (c.linger.count() < 0) throw ConfigurationError("producer linger must not be negative");
    impl.label = "producer '" + c.client_id + "'";
    impl.log_handler = c.log_handler;
    impl.broker = resolve(c.broker_url);

    ConfBuilder conf;
    conf.set("bootstrap.servers", impl.broker.bootstrap_servers)
        .set("client.id", c.client_id)
        .set("enable.idempotence", c.idempotent ? "true" : "false")
        .set("acks", c.acks)
        .set("compression.codec", c.compression)
        .set("linger.ms", milliseconds(c.linger))
        .set("message.timeout.ms", milliseconds(c.delivery_timeout))
        .set("allow.auto.create.topics", "false")
        .set("queue.buffering.max.messages", "500000");
    conf.set_all(c.properties);
    if (c.idempotent) {
        auto it = c.properties.find("debug");
        impl.user_debug = it != c.properties.end() && !it->second.empty();
        std::string debug = impl.user_debug ? it->second + ",eos" : "eos";
        conf.set("debug", debug);
    }
    rd_kafka_conf_set_dr_msg_cb(conf.get(), &Impl::dr_msg_cb);
    char limit[32];
    std::size_t limit_size = sizeof limit;
    if (rd_kafka_conf_get(conf.get(), "message.max.bytes", limit, &limit_size) == RD_KAFKA_CONF_OK)
        impl.max_message_bytes = std::strtoull(limit, nullptr, 10);
    impl.rk = conf.create(RD_KAFKA_PRODUCER, &impl);
}

Producer::~Producer() {
    if (impl_) {
        try {
            close();
        } catch (...) {
            // Destructors do not throw; close() explicitly to see errors.
        }
    }
}

Producer::Producer(Producer&&) noexcept = default;
Producer& Producer::operator=(Producer&&) noexcept = default;

const ProducerConfig& Producer::config() const noexcept {
    return impl_->config;
}

void Producer::produce(const OutgoingMessage& message, DeliveryCallback on_delivery) {
    impl_->check_open();
    auto* target = new CallbackTarget();
    target->callback = std::move(on_delivery);
    target->error_sink = &impl_->callback_error;
    auto err = impl_->enqueue(message, target, /*copy=*/true);
    if (err) {
        delete target;
        if (err == RD_KAFKA_RESP_ERR__FATAL) impl_->check_fatal();
        throw_error(err, "cannot queue a message for topic '" + message.topic + "'");
    }
}

DeliveryReport Producer::send(const OutgoingMessage& message, std::chrono::milliseconds timeout) {
    std::vector<OutgoingMessage> one{message};
    auto batch = produce_batch(std::move(one));
    if (!wait(*batch, timeout))
        throw TimeoutError("no delivery report for the message to topic '" + message.topic +
                           "' within " + std::to_string(timeout.count()) +
                           " ms; it may still be delivered");
    batch->reports().front().raise(message.topic);
    return batch->reports().front();
}

std::shared_ptr<BatchDelivery> Producer::produce_batch(std::vector<OutgoingMessage> messages) {
    impl_->check_open();
    auto& flight = impl_->track(BatchDelivery::awaiting(std::move(messages)));
    auto batch = flight.batch;
    if (impl_->enqueue_batch(flight)) return batch;
    const auto& queued = batch->messages();
    impl_->enqueue_each(
        flight, queued.size(), [&](std::size_t i) -> const OutgoingMessage& { return queued[i]; },
        /*copy=*/false);
    return batch;
}

std::shared_ptr<BatchDelivery> Producer::produce_batch(std::span<const OutgoingView> messages) {
    impl_->check_open();
    auto& flight = impl_->track(BatchDelivery::awaiting(messages.size()));
    auto batch = flight.batch;
    impl_->enqueue_each(
        flight, messages.size(), [&](std::size_t i) -> const OutgoingView& { return messages[i]; },
        /*copy=*/true);
    return batch;
}

bool Producer::wait(const BatchDelivery& batch, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (!batch.done()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) break;
        // Short slices: another thread may be serving our reports.
        rd_kafka_poll(impl_->rk.get(), static_cast<int>(std::min<int64_t>(left.count(), 50)));
        impl_->rethrow_callback_error();
    }
    impl_->prune_batches();
    return batch.done();
}

std::shared_ptr<BatchDelivery> Producer::send_batch(std::vector<OutgoingMessage> messages) {
    auto batch = produce_batch(std::move(messages));
    // Every message is reported within delivery_timeout, so this ends.
    while (!wait(*batch, std::chrono::seconds(1))) {
    }
    return batch;
}

int Producer::poll(std::chrono::milliseconds timeout) {
    impl_->check_open();
    int served = rd_kafka_poll(impl_->rk.get(), static_cast<int>(timeout.count()));
    impl_->prune_batches();
    impl_->rethrow_callback_error();
    return served;
}

bool Producer::flush(std::chrono::milliseconds timeout) {
    impl_->check_open();
    auto err = rd_kafka_flush(impl_->rk.get(), static_cast<int>(timeout.count()));
    impl_->prune_batches();
    impl_->rethrow_callback_error();
    return err == RD_KAFKA_RESP_ERR_NO_ERROR;
}

int Producer::in_flight() const {
    return impl_->closed.load() ? 0 : rd_kafka_outq_len(impl_->rk.get());
}

void Producer::close() {
    close(impl_->config.close_timeout);
}

void Producer::close(std::chrono::milliseconds timeout) {
    if (!impl_ || impl_->closed.exchange(true)) return;
    auto* rk = impl_->rk.get();
    rd_kafka_flush(rk, static_cast<int>(timeout.count()));
    if (rd_kafka_outq_len(rk) > 0) {
        // Give up on what is left: each message gets a "purged" report, none is lost silently.
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(rk, 1000);
    }
    {
        std::lock_guard lock(impl_->topics_mutex);
        impl_->topic_handles.clear();
    }
    impl_->rk.reset();
    impl_->prune_batches();
}

bool Producer::closed() const noexcept {
    return !impl_ || impl_->closed.load();
}

std::size_t Producer::max_message_bytes() const {
    return impl_->max_message_bytes;
}

bool Producer::idempotence_enabled() const {
    return impl_->config.idempotent && impl_->producer_id.load() >= 0;
}

}  // namespace postroom::kafka
