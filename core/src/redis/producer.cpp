// StreamProducer: XADD of single messages and of batches, as script calls of up to 1,000
// adds (one fsync per chunk with appendfsync always), sent with or without waiting for the
// replies; the reports of batches sent without waiting come in the order they were sent.
#include "postroom/redis/streams.hpp"

#include <algorithm>
#include <deque>
#include <mutex>
#include <utility>

#include "connection.hpp"
#include "fields.hpp"
#include "postroom/error.hpp"

namespace postroom::redis {

using detail::Command;
using detail::Connection;
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

}  // namespace

DeliveryReport AddResult::report() const {
    DeliveryReport out;
    out.partition = 0;
    if (ok()) {
        out.id = id;
        out.persistence = Persistence::persisted;
    } else {
        out.failure = refusal(error);
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
        std::shared_ptr<BatchDelivery> delivery;
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

std::shared_ptr<BatchDelivery> StreamProducer::send_batch(std::vector<OutgoingMessage> messages) {
    auto calls = impl_->scripts(messages);
    std::lock_guard lock(impl_->mutex);
    if (impl_->closed) throw UsageError("the producer is closed");
    Impl::InFlight batch;
    for (std::size_t c = 0; c < calls.size(); ++c) {
        batch.firsts.push_back(c * Impl::chunk);
        batch.calls.push_back(impl_->connection.send({calls[c]}));
    }
    batch.delivery = BatchDelivery::awaiting(std::move(messages));
    auto delivery = batch.delivery;
    impl_->entries_in_flight += delivery->size();
    impl_->in_flight.push_back(std::move(batch));
    return delivery;
}

void StreamProducer::wait(const BatchDelivery& batch) {
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

}  // namespace postroom::redis
