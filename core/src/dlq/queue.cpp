// The DeadLetterQueue's public methods and the clients it owns (clients.hpp). Reading a topic
// to its end is in scan.cpp, the ledger and its records in ledger.cpp, a replay in replay.cpp.
#include "postroom/dlq/queue.hpp"

#include <algorithm>

#include "../redis/connection.hpp"
#include "clients.hpp"
#include "ledger.hpp"
#include "postroom/broker_url.hpp"
#include "postroom/error.hpp"
#include "postroom/redact.hpp"
#include "replay.hpp"
#include "scan.hpp"

namespace postroom::dlq {

using namespace std::chrono;

namespace detail {

Clients::Clients(QueueConfig c) : config(std::move(c)) {
    redis = parse_broker_url(config.broker_url).scheme == BrokerScheme::redis;
    if (redis) {
        streams = std::make_unique<postroom::redis::StreamAdmin>(config.broker_url);
        connection = std::make_unique<postroom::redis::detail::Connection>(
            postroom::redis::detail::Address::from_url(config.broker_url, "the dead-letter ledger"),
            config.timeout);
    }
}

Clients::~Clients() = default;

kafka::Admin& Clients::the_admin() {
    if (!admin) {
        kafka::AdminConfig c;
        c.broker_url = config.broker_url;
        c.client_id = "postroom-dlq";
        c.timeout = config.timeout;
        admin = std::make_unique<kafka::Admin>(c);
    }
    return *admin;
}

kafka::Producer& Clients::the_producer() {
    if (!producer) {
        kafka::ProducerConfig c;
        c.broker_url = config.broker_url;
        c.client_id = "postroom-dlq-replay";
        c.linger = milliseconds(5);
        // A letter goes back as large as it came: the destination topic's own limit
        // (max.message.bytes) is the one that counts.
        c.properties["message.max.bytes"] = std::to_string(64 << 20);
        producer = std::make_unique<kafka::Producer>(c);
    }
    return *producer;
}

postroom::redis::StreamProducer& Clients::the_stream_producer() {
    if (!stream_producer)
        stream_producer = std::make_unique<postroom::redis::StreamProducer>(
            postroom::redis::StreamProducerConfig{config.broker_url, std::nullopt, config.timeout});
    return *stream_producer;
}

void Clients::missing() const {
    throw UsageError("dead-letter topic '" + config.topic + "' does not exist on " +
                     redacted_url(config.broker_url) + "; list topics with `postroom topics`");
}

std::vector<std::string> Clients::send(std::vector<OutgoingMessage> batch) {
    std::vector<std::string> errors;
    errors.reserve(batch.size());
    if (redis) {
        for (auto& r : the_stream_producer().add_batch(batch)) errors.push_back(r.error);
        return errors;
    }
    auto delivery = the_producer().send_batch(std::move(batch));
    for (const auto& r : delivery->reports())
        errors.push_back(r.ok() ? std::string() : r.error_message());
    return errors;
}

}  // namespace detail

struct DeadLetterQueue::Impl : detail::Clients {
    using Clients::Clients;
};

DeadLetterQueue::DeadLetterQueue(QueueConfig config) {
    if (config.topic.empty()) throw ConfigurationError("a dead-letter queue needs its topic");
    impl_ = std::make_unique<Impl>(std::move(config));
}

DeadLetterQueue::~DeadLetterQueue() = default;
DeadLetterQueue::DeadLetterQueue(DeadLetterQueue&&) noexcept = default;
DeadLetterQueue& DeadLetterQueue::operator=(DeadLetterQueue&&) noexcept = default;

const QueueConfig& DeadLetterQueue::config() const noexcept {
    return impl_->config;
}

int64_t DeadLetterQueue::size() {
    if (impl_->redis) {
        if (!impl_->streams->exists(impl_->config.topic)) impl_->missing();
        return impl_->streams->length(impl_->config.topic);
    }
    int64_t n = 0;
    for (auto [p, low, high] : detail::extent(*impl_, impl_->config.topic, true)) n += high - low;
    return n;
}

void DeadLetterQueue::scan(const std::function<bool(DeadLetter&&)>& visit,
                           const std::function<void(int64_t, int64_t)>& progress) {
    detail::scan_messages(
        *impl_, impl_->config.topic, true, [&](Message&& m) { return visit(decode(std::move(m))); },
        progress);
}

std::vector<DeadLetter> DeadLetterQueue::list(const Filter& filter, std::size_t limit,
                                              std::size_t skip, bool newest_first,
                                              bool include_settled) {
    const auto settled = include_settled ? std::map<std::string, LedgerEntry>{} : ledger();
    const std::size_t keep = skip + limit;
    std::vector<DeadLetter> found;
    auto before = [newest_first](const DeadLetter& a, const DeadLetter& b) {
        if (a.record.timestamp_ms != b.record.timestamp_ms)
            return newest_first ? a.record.timestamp_ms > b.record.timestamp_ms
                                : a.record.timestamp_ms < b.record.timestamp_ms;
        if (a.record.partition != b.record.partition)
            return a.record.partition < b.record.partition;
        if (a.record.offset != b.record.offset)
            return newest_first ? a.record.offset > b.record.offset
                                : a.record.offset < b.record.offset;
        return newest_first ? a.record.id > b.record.id : a.record.id < b.record.id;
    };
    auto trim = [&] {
        std::partial_sort(found.begin(),
                          found.begin() + static_cast<std::ptrdiff_t>(std::min(keep, found.size())),
                          found.end(), before);
        if (found.size() > keep) found.resize(keep);
    };
    scan([&](DeadLetter&& d) {
        if (!settled.empty() && settled.count(d.id())) return true;
        if (!filter.matches(d)) return true;
        found.push_back(std::move(d));
        if (found.size() > 2 * keep + 1024) trim();
        return true;
    });
    trim();
    if (skip >= found.size()) return {};
    found.erase(found.begin(), found.begin() + static_cast<std::ptrdiff_t>(skip));
    return found;
}

std::optional<DeadLetter> DeadLetterQueue::show(const std::string& id) {
    Filter f;
    f.ids.insert(id);
    auto found = list(f, 1, 0, true, true);
    if (found.empty()) return std::nullopt;
    return std::move(found.front());
}

Stats DeadLetterQueue::stats(const Filter& filter, bool include_settled,
                             const std::function<void(int64_t, int64_t)>& progress) {
    const auto settled = include_settled ? std::map<std::string, LedgerEntry>{} : ledger();
    Stats stats;
    // Records are read and decoded on a thread of their own, and counted on this one.
    int64_t seen = 0, next_report = 5000;
    const int64_t total = progress ? size() : 0;
    std::string id;
    detail::scan_on_reader_thread<detail::DecodedBatch>(
        *impl_, impl_->config.topic, true,
        [](MessageBatch&& batch) { return detail::DecodedBatch(std::move(batch)); },
        [&](detail::DecodedBatch&& batch) {
            for (std::size_t i = 0; i < batch.size(); ++i) {
                const auto letter = batch.letter(i);
                if (!settled.empty()) {
                    id.clear();
                    append_letter_id(id, letter.record);
                    if (settled.count(id)) continue;
                }
                if (filter.matches(letter)) stats.add(letter);
            }
            seen += static_cast<int64_t>(batch.size());
            if (progress && seen >= next_report) {
                progress(seen, total);
                next_report = seen + 5000;
            }
            return true;
        });
    if (progress) progress(seen, total);
    return stats;
}

std::map<std::string, LedgerEntry> DeadLetterQueue::ledger() {
    return detail::read_ledger(*impl_);
}

ReplayReport DeadLetterQueue::replay(const ReplayOptions& o) {
    if (o.batch_size == 0) throw ConfigurationError("replay batch_size must be positive");
    if (o.rate_per_s < 0) throw ConfigurationError("replay rate must be positive (or 0: no limit)");
    if (o.max_replays < 1) throw ConfigurationError("replay max_replays must be at least 1");
    auto settled = ledger();
    // After the ledger, before the replay makes sure of the ledger topic: a topic that does
    // not exist gets no ledger.
    const int64_t total = o.dry_run ? 0 : size();
    return detail::Replay(*impl_, o, std::move(settled), total).run();
}

std::size_t DeadLetterQueue::resolve(const std::vector<std::string>& ids, const std::string& note) {
    if (ids.empty()) return 0;
    if (impl_->redis) {
        std::vector<std::string> entry_ids;
        const auto prefix = impl_->config.topic + ":";
        for (const auto& id : ids) {
            if (id.compare(0, prefix.size(), prefix) != 0)
                throw UsageError("'" + id + "' is not a letter of '" + impl_->config.topic +
                                 "' (ids look like " + prefix + "<entry id>)");
            entry_ids.push_back(id.substr(prefix.size()));
        }
        return impl_->streams->remove_entries(impl_->config.topic, entry_ids);
    }
    std::vector<std::pair<std::string, LedgerEntry>> entries;
    const auto now = detail::epoch_ms();
    for (const auto& id : ids) entries.push_back({id, {"resolved", now, note}});
    detail::write_ledger(*impl_, entries);
    return ids.size();
}

int64_t DeadLetterQueue::truncate(int32_t partition, int64_t before_offset) {
    if (impl_->redis)
        throw UsageError("Redis streams delete single entries: use resolve (purge) instead");
    return impl_->the_admin().delete_records({impl_->config.topic, partition}, before_offset);
}

}  // namespace postroom::dlq
