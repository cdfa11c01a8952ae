#include "postroom/dlq/queue.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <future>
#include <mutex>
#include <random>
#include <thread>

#include "../redis/connection.hpp"
#include "clients.hpp"
#include "ledger.hpp"
#include "postroom/broker_url.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/admin.hpp"
#include "postroom/kafka/consumer.hpp"
#include "postroom/kafka/producer.hpp"
#include "postroom/redact.hpp"
#include "postroom/redis/streams.hpp"
#include "scan.hpp"

namespace postroom::dlq {

using namespace std::chrono;
using Clock = steady_clock;

namespace {

// "<time in ms>-<8 random hex digits>": names one replay in its records and ledger entries.
std::string new_replay_id() {
    static std::mt19937_64 rng{std::random_device{}()};
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(rng() & 0xffffffffu));
    return std::to_string(detail::epoch_ms()) + "-" + hex;
}

bool starts_with(std::string_view s, std::string_view p) {
    return s.compare(0, p.size(), p) == 0;
}

}  // namespace

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
    auto& impl = *impl_;
    const auto parking = o.parking_topic.empty() ? impl.config.topic + ".parking" : o.parking_topic;
    const auto settled = ledger();
    ReplayReport report;
    report.replay_id = new_replay_id();
    std::vector<std::string> targets;        // the destinations met so far
    std::vector<int64_t> per_target;         // letters, by index in `targets`
    std::vector<signed char> target_exists;  // by index: -1 unknown, 0 no, 1 yes
    std::map<std::array<char, 16>, int64_t> per_fingerprint;
    struct Planned {
        std::size_t id_at, id_size;  // in the flight's `ids`
        std::size_t target;          // in `targets`
        int replay_count;
        int32_t partition;  // Kafka: where the letter is
        int64_t offset;
        const MessageView* record;  // until sent
    };
    // The loop guard: a letter replayed max_replays times goes to the parking lot.
    auto parked = [&](int replay_count) { return replay_count >= o.max_replays; };
    // Letters sent together, awaiting their acknowledgements.
    struct Flight {
        std::string ids;  // the letters' ids, one after another
        std::vector<Planned> letters;
        std::shared_ptr<kafka::BatchDelivery> delivery;  // Kafka
        std::vector<std::string> errors;                 // Redis: known at once
        std::string_view id(const Planned& p) const {
            return std::string_view(ids).substr(p.id_at, p.id_size);
        }
    };
    // Letters stream from the scan into flights; a flight goes out as soon as it is full,
    // while earlier ones await their acknowledgements (up to 4 in flight), so reading and
    // sending overlap and memory holds a few flights, not the selection.
    std::size_t step = o.batch_size;
    if (o.rate_per_s > 0)
        step = std::clamp<std::size_t>(static_cast<std::size_t>(o.rate_per_s / 10), 1, step);
    // The ledger topic is made sure of while the first letters are read and sent (it is
    // needed only when the first acknowledgements are recorded), by an admin client of its
    // own: a broker answers a connection's requests in order, and creating a topic takes a
    // while. After size(): a topic that does not exist gets no ledger.
    const int64_t total = o.dry_run ? 0 : size();
    std::future<void> ledger_topic;
    if (!o.dry_run && !impl.redis) {
        // Created now, the producer connects and gets its producer id while the scan starts.
        impl.the_producer();
        ledger_topic = std::async(std::launch::async, [config = impl.the_admin().config(),
                                                       name = detail::ledger_name(impl.config)] {
            kafka::Admin admin(config);
            detail::ensure_ledger_topic(admin, name);
        });
    }
    std::deque<Flight> flight;
    Flight current;
    std::vector<detail::DecodedBatch>
        held;  // what current's letters point into, until they are sent
    std::vector<std::shared_ptr<kafka::BatchDelivery>> ledger_writes;
    std::string missing_target, first_error;
    const auto started = Clock::now();
    int64_t submitted = 0, acknowledged = 0;

    auto settle_front = [&] {
        auto f = std::move(flight.front());
        flight.pop_front();
        if (f.delivery) {
            const auto give_up = Clock::now() + impl.config.timeout + seconds(30);
            while (!impl.the_producer().wait(*f.delivery, seconds(1)))
                if (Clock::now() > give_up)
                    throw TimeoutError("replay: no acknowledgement from " +
                                       redacted_url(impl.config.broker_url) +
                                       " in time; run it again to resume");
        }
        // Why letter k was not acknowledged; "" when it was.
        auto failure = [&](std::size_t k) {
            if (!f.delivery) return f.errors[k];
            const auto& r = f.delivery->reports()[k];
            return r.ok() ? std::string() : r.error_message();
        };
        const auto now = detail::epoch_ms();
        std::vector<std::pair<std::string, LedgerEntry>> done;  // Redis
        std::vector<OutgoingMessage> records;                   // Kafka
        // Kafka: a ledger record names runs of consecutive offsets that went to one
        // destination, up to 1,000 runs a record (the format: ledger.hpp).
        struct Run {
            int32_t partition;
            int64_t first, last;
            std::size_t target;
        };
        std::vector<Run> runs;
        auto write_record = [&](std::string_view first_id) {
            detail::LedgerRecord record;
            record.shape = detail::LedgerRecord::Shape::runs;
            record.state = "replayed";
            record.at_ms = now;
            record.replay_id = report.replay_id;
            record.runs.reserve(runs.size());
            for (const auto& r : runs)
                record.runs.push_back({impl.config.topic + ':' + std::to_string(r.partition),
                                       r.first, r.last, targets[r.target]});
            records.push_back({detail::ledger_name(impl.config),
                               detail::ledger_record_key(first_id, now),
                               detail::encode_ledger_record(record),
                               {},
                               std::nullopt});
            runs.clear();
        };
        std::string_view first_id;
        for (std::size_t k = 0; k < f.letters.size(); ++k) {
            const auto& p = f.letters[k];
            const auto id = f.id(p);
            if (auto error = failure(k); !error.empty()) {
                if (first_error.empty())
                    first_error = "replay of " + std::string(id) + " to '" + targets[p.target] +
                                  "' failed: " + error;
                continue;
            }
            if (parked(p.replay_count))
                ++report.parked;
            else
                ++report.replayed;
            if (impl.redis) {
                done.push_back({std::string(id), {"replayed", now, targets[p.target]}});
                continue;
            }
            if (!runs.empty() && runs.back().partition == p.partition &&
                runs.back().last + 1 == p.offset && runs.back().target == p.target) {
                runs.back().last = p.offset;
                continue;
            }
            if (runs.size() == 1000) write_record(first_id);
            if (runs.empty()) first_id = id;
            runs.push_back({p.partition, p.offset, p.offset, p.target});
        }
        if (!runs.empty()) write_record(first_id);
        if (impl.redis)
            detail::write_ledger(impl, done);  // only what was acknowledged
        else if (!records.empty()) {
            if (ledger_topic.valid()) ledger_topic.get();
            ledger_writes.push_back(impl.the_producer().produce_batch(std::move(records)));
        }
        acknowledged += static_cast<int64_t>(f.letters.size());
        if (o.progress && !o.progress(acknowledged, total)) report.cancelled = true;
    };

    // The records to send for `f`'s letters: key, value and headers as read, without the
    // failure description (postroom-dlt-*, kept when parked), the replay count raised.
    std::string texts;  // the replay counts and parking reasons, one after another
    std::vector<HeaderView> headers;
    std::vector<OutgoingView> outgoing;
    auto outgoing_of = [&](const Flight& f) {
        texts.clear();
        // Per letter, in `texts`: its replay count, then its parking reason when parked.
        struct Texts {
            std::size_t at, count_size, size;
        };
        std::vector<Texts> text_of;
        text_of.reserve(f.letters.size());
        std::size_t header_count = 0;
        for (const auto& p : f.letters) {
            header_count += p.record->headers.size() + 4;
            const auto at = texts.size();
            texts += std::to_string(p.replay_count + 1);
            const auto count_size = texts.size() - at;
            if (parked(p.replay_count))
                texts += "replayed " + std::to_string(p.replay_count) +
                         " times already (the loop guard's limit)";
            text_of.push_back({at, count_size, texts.size() - at});
        }
        const std::string_view all_texts(texts);
        headers.clear();
        headers.reserve(header_count);  // never reallocated: the views point into it
        outgoing.clear();
        outgoing.reserve(f.letters.size());
        for (std::size_t k = 0; k < f.letters.size(); ++k) {
            const auto& p = f.letters[k];
            const auto& t = text_of[k];
            const bool parking_it = parked(p.replay_count);
            const auto first = headers.size();
            for (const auto& h : p.record->headers)
                if (!(h.name == "postroom-replay-count" || h.name == "postroom-replayed-from" ||
                      h.name == "postroom-replay-id" ||
                      (!parking_it && !o.keep_failure_headers && is_failure_header(h.name))))
                    headers.push_back(h);
            headers.push_back({"postroom-replay-count", all_texts.substr(t.at, t.count_size)});
            headers.push_back({"postroom-replayed-from", f.id(p)});
            headers.push_back({"postroom-replay-id", report.replay_id});
            if (parking_it)
                headers.push_back({"postroom-parked-reason",
                                   all_texts.substr(t.at + t.count_size, t.size - t.count_size)});
            outgoing.push_back(
                {targets[p.target], p.record->key, p.record->value,
                 std::span<const HeaderView>(headers.data() + first, headers.size() - first),
                 std::nullopt});
        }
        return std::span<const OutgoingView>(outgoing);
    };

    auto submit = [&] {
        if (current.letters.empty()) return;
        if (o.rate_per_s > 0) {
            // Pace by the schedule: letter k may go at started + k / rate.
            auto due = started + duration_cast<Clock::duration>(duration<double>(
                                     static_cast<double>(submitted) / o.rate_per_s));
            std::this_thread::sleep_until(due);
        }
        Flight f = std::move(current);
        current = Flight{};
        const auto records = outgoing_of(f);
        if (impl.redis) {
            std::vector<OutgoingMessage> batch;
            batch.reserve(records.size());
            for (const auto& r : records) batch.push_back(to_outgoing_message(r));
            f.errors = impl.send(std::move(batch));
        } else {
            f.delivery = impl.the_producer().produce_batch(records);  // copies them
        }
        for (auto& p : f.letters) p.record = nullptr;
        held.clear();
        submitted += static_cast<int64_t>(f.letters.size());
        flight.push_back(std::move(f));
        if (!impl.redis) impl.the_producer().poll(milliseconds(0));
        while (!flight.empty() &&
               (flight.size() > 4 || !flight.front().delivery || flight.front().delivery->done()))
            settle_front();
    };

    std::size_t last_target = 0;
    auto target_index = [&](std::string_view target) {
        if (last_target < targets.size() && targets[last_target] == target) return last_target;
        auto it = std::find(targets.begin(), targets.end(), target);
        last_target = static_cast<std::size_t>(it - targets.begin());
        if (it == targets.end()) {
            targets.emplace_back(target);
            per_target.push_back(0);
            target_exists.push_back(-1);
        }
        return last_target;
    };

    // Kafka does not create topics on first use here: a destination must exist.
    auto exists = [&](std::size_t index) {
        if (impl.redis) return true;
        auto& known = target_exists[index];
        if (known < 0) {
            const auto& target = targets[index];
            if (target == parking) {
                impl.the_admin().create_topic(parking, 1, 1, {}, true);
                known = 1;
            } else {
                known = impl.the_admin().describe_topic(target).has_value() ? 1 : 0;
            }
        }
        return known > 0;
    };

    // Letters are read and decoded on a thread of their own while this one sends them.
    std::string id;
    detail::scan_on_reader_thread<detail::DecodedBatch>(
        impl, impl.config.topic, true,
        [](MessageBatch&& batch) { return detail::DecodedBatch(std::move(batch)); },
        [&](detail::DecodedBatch&& batch) {
            bool keep = false;  // whether `current` points into this batch
            for (std::size_t i = 0; i < batch.size(); ++i) {
                const auto letter = batch.letter(i);
                if (!o.filter.matches(letter)) continue;
                id.clear();
                append_letter_id(id, letter.record);
                if (auto it = settled.find(id); it != settled.end()) {
                    if (!(o.again && it->second.state == "replayed")) {
                        ++report.skipped;
                        continue;
                    }
                }
                const auto& facts = letter.facts;
                if (facts.value_truncated) {  // its value is only a prefix of the event's
                    ++report.truncated;
                    continue;
                }
                std::string_view target = o.to.empty() ? facts.original_topic : o.to;
                if (target.empty()) {
                    ++report.without_target;
                    continue;
                }
                if (parked(facts.replay_count)) target = parking;
                const auto index = target_index(target);
                if (!o.dry_run && !exists(index)) {
                    missing_target = targets[index];
                    break;
                }
                ++report.selected;
                ++per_target[index];
                ++per_fingerprint[batch.fingerprints[i]];
                if (o.dry_run) continue;
                const auto id_at = current.ids.size();
                current.ids += id;
                current.letters.push_back({id_at, id.size(), index, facts.replay_count,
                                           letter.record.partition, letter.record.offset,
                                           &letter.record});
                keep = true;
                if (current.letters.size() >= step) {
                    submit();
                    keep = false;
                    if (!first_error.empty() || report.cancelled) break;
                }
            }
            if (keep && !current.letters.empty()) held.push_back(std::move(batch));
            return first_error.empty() && !report.cancelled && missing_target.empty();
        });
    if (first_error.empty() && !report.cancelled && missing_target.empty()) submit();
    current = Flight{};  // letters never sent (stopped early): their records go now
    held.clear();
    for (std::size_t t = 0; t < targets.size(); ++t)
        if (per_target[t] > 0) report.per_target[targets[t]] = per_target[t];
    for (const auto& [fp, n] : per_fingerprint)
        report.per_fingerprint[std::string(fp.data(), fp.size())] = n;
    // What is left goes at once instead of after the producer's linger (flush overrides it);
    // the waits below then find the acknowledgements there.
    auto flush = [&] {
        if (impl.producer) impl.producer->flush(seconds(1));
    };
    flush();
    while (!flight.empty()) settle_front();
    flush();
    for (const auto& w : ledger_writes) {
        const auto give_up = Clock::now() + impl.config.timeout + seconds(30);
        while (!impl.the_producer().wait(*w, seconds(1)))
            if (Clock::now() > give_up)
                throw TimeoutError("replay: the ledger '" + detail::ledger_name(impl.config) +
                                   "' was not acknowledged in time; run the replay again (some "
                                   "letters may be sent twice)");
        w->raise_for_failures();
    }
    if (!missing_target.empty())
        throw UsageError("replay: topic '" + missing_target + "' does not exist on " +
                         redacted_url(impl.config.broker_url) +
                         "; create it, or choose another destination "
                         "(to / --to). " +
                         std::to_string(report.replayed) +
                         " letters before it were replayed and recorded.");
    if (!first_error.empty())
        throw TransportError(first_error + " (" + std::to_string(report.replayed) +
                                 " replayed and recorded; run the replay again to resume)",
                             Retriable::unknown);
    return report;
}

std::size_t DeadLetterQueue::resolve(const std::vector<std::string>& ids, const std::string& note) {
    if (ids.empty()) return 0;
    if (impl_->redis) {
        std::vector<std::string> entry_ids;
        const auto prefix = impl_->config.topic + ":";
        for (const auto& id : ids) {
            if (!starts_with(id, prefix))
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
