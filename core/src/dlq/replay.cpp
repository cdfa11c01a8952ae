#include "replay.hpp"

#include <algorithm>
#include <cstdio>
#include <random>
#include <thread>

#include "ledger.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/admin.hpp"
#include "postroom/kafka/producer.hpp"
#include "postroom/redact.hpp"

namespace postroom::dlq::detail {

using namespace std::chrono;
using Clock = steady_clock;

namespace {

// "<time in ms>-<8 random hex digits>": names one replay in its records and ledger entries.
std::string new_replay_id() {
    static std::mt19937_64 rng{std::random_device{}()};
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(rng() & 0xffffffffu));
    return std::to_string(epoch_ms()) + "-" + hex;
}

}  // namespace

Replay::Replay(Clients& clients, const ReplayOptions& options,
               std::map<std::string, LedgerEntry> settled, int64_t total)
    : clients_(clients),
      options_(options),
      parking_(options.parking_topic.empty() ? clients.config.topic + ".parking"
                                             : options.parking_topic),
      settled_(std::move(settled)),
      total_(total),
      step_(options.batch_size) {
    report_.replay_id = new_replay_id();
    // Letters stream from the scan into flights; a flight goes out as soon as it is full,
    // while earlier ones await their acknowledgements (up to 4 in flight), so reading and
    // sending overlap and memory holds a few flights, not the selection.
    if (options.rate_per_s > 0)
        step_ =
            std::clamp<std::size_t>(static_cast<std::size_t>(options.rate_per_s / 10), 1, step_);
}

ReplayReport Replay::run() {
    // The ledger topic is made sure of while the first letters are read and sent (it is
    // needed only when the first acknowledgements are recorded), by an admin client of its
    // own: a broker answers a connection's requests in order, and creating a topic takes a
    // while. After size(): a topic that does not exist gets no ledger.
    if (!options_.dry_run && !clients_.redis) {
        // Created now, the producer connects and gets its producer id while the scan starts.
        clients_.the_producer();
        ledger_topic_ = std::async(std::launch::async, [config = clients_.the_admin().config(),
                                                        name = ledger_name(clients_.config)] {
            kafka::Admin admin(config);
            ensure_ledger_topic(admin, name);
        });
    }
    started_ = Clock::now();
    // Letters are read and decoded on a thread of their own while this one sends them.
    scan_on_reader_thread<DecodedBatch>(
        clients_, clients_.config.topic, true,
        [](MessageBatch&& batch) { return DecodedBatch(std::move(batch)); },
        [&](DecodedBatch&& batch) { return plan(std::move(batch)); });
    if (going()) submit();
    finish();
    return std::move(report_);
}

// Plan.

bool Replay::plan(DecodedBatch&& batch) {
    const auto& o = options_;
    bool keep = false;  // whether `current_` points into this batch
    for (std::size_t i = 0; i < batch.size(); ++i) {
        const auto letter = batch.letter(i);
        if (!o.filter.matches(letter)) continue;
        id_.clear();
        append_letter_id(id_, letter.record);
        if (auto it = settled_.find(id_); it != settled_.end()) {
            if (!(o.again && it->second.state == "replayed")) {
                ++report_.skipped;
                continue;
            }
        }
        const auto& facts = letter.facts;
        if (facts.value_truncated) {  // its value is only a prefix of the event's
            ++report_.truncated;
            continue;
        }
        std::string_view target = o.to.empty() ? facts.original_topic : o.to;
        if (target.empty()) {
            ++report_.without_target;
            continue;
        }
        // The loop guard: a letter replayed max_replays times goes to the parking lot.
        if (parked(facts.replay_count)) target = parking_;
        const auto index = target_index(target);
        if (!o.dry_run && !exists(index)) {
            missing_target_ = targets_[index];
            break;
        }
        ++report_.selected;
        ++per_target_[index];
        ++per_fingerprint_[batch.fingerprints[i]];
        if (o.dry_run) continue;
        const auto id_at = current_.ids.size();
        current_.ids += id_;
        current_.letters.push_back({id_at, id_.size(), index, facts.replay_count,
                                    letter.record.partition, letter.record.offset, &letter.record});
        keep = true;
        if (current_.letters.size() >= step_) {
            submit();
            keep = false;
            if (!first_error_.empty() || report_.cancelled) break;
        }
    }
    if (keep && !current_.letters.empty()) held_.push_back(std::move(batch));
    return going();
}

std::size_t Replay::target_index(std::string_view target) {
    if (last_target_ < targets_.size() && targets_[last_target_] == target) return last_target_;
    auto it = std::find(targets_.begin(), targets_.end(), target);
    last_target_ = static_cast<std::size_t>(it - targets_.begin());
    if (it == targets_.end()) {
        targets_.emplace_back(target);
        per_target_.push_back(0);
        target_exists_.push_back(-1);
    }
    return last_target_;
}

// Kafka does not create topics on first use here: a destination must exist.
bool Replay::exists(std::size_t index) {
    if (clients_.redis) return true;
    auto& known = target_exists_[index];
    if (known < 0) {
        const auto& target = targets_[index];
        if (target == parking_) {
            clients_.the_admin().create_topic(parking_, 1, 1, {}, true);
            known = 1;
        } else {
            known = clients_.the_admin().describe_topic(target).has_value() ? 1 : 0;
        }
    }
    return known > 0;
}

// Flights.

// The records to send for `f`'s letters: key, value and headers as read, without the
// failure description (is_failure_header; kept when parked or keep_failure_headers), and with
// postroom-replay-count raised, postroom-replayed-from, postroom-replay-id and, when parked,
// postroom-parked-reason.
std::span<const OutgoingView> Replay::outgoing_of(const Flight& f) {
    texts_.clear();
    // Per letter, in `texts_`: its replay count, then its parking reason when parked.
    struct Texts {
        std::size_t at, count_size, size;
    };
    std::vector<Texts> text_of;
    text_of.reserve(f.letters.size());
    std::size_t header_count = 0;
    for (const auto& p : f.letters) {
        header_count += p.record->headers.size() + 4;
        const auto at = texts_.size();
        texts_ += std::to_string(p.replay_count + 1);
        const auto count_size = texts_.size() - at;
        if (parked(p.replay_count))
            texts_ += "replayed " + std::to_string(p.replay_count) +
                      " times already (the loop guard's limit)";
        text_of.push_back({at, count_size, texts_.size() - at});
    }
    const std::string_view all_texts(texts_);
    headers_.clear();
    headers_.reserve(header_count);  // never reallocated: the views point into it
    outgoing_.clear();
    outgoing_.reserve(f.letters.size());
    for (std::size_t k = 0; k < f.letters.size(); ++k) {
        const auto& p = f.letters[k];
        const auto& t = text_of[k];
        const bool parking_it = parked(p.replay_count);
        const auto first = headers_.size();
        for (const auto& h : p.record->headers)
            if (!(h.name == "postroom-replay-count" || h.name == "postroom-replayed-from" ||
                  h.name == "postroom-replay-id" ||
                  (!parking_it && !options_.keep_failure_headers && is_failure_header(h.name))))
                headers_.push_back(h);
        headers_.push_back({"postroom-replay-count", all_texts.substr(t.at, t.count_size)});
        headers_.push_back({"postroom-replayed-from", f.id(p)});
        headers_.push_back({"postroom-replay-id", report_.replay_id});
        if (parking_it)
            headers_.push_back({"postroom-parked-reason",
                                all_texts.substr(t.at + t.count_size, t.size - t.count_size)});
        outgoing_.push_back(
            {targets_[p.target], p.record->key, p.record->value,
             std::span<const HeaderView>(headers_.data() + first, headers_.size() - first),
             std::nullopt});
    }
    return std::span<const OutgoingView>(outgoing_);
}

void Replay::submit() {
    if (current_.letters.empty()) return;
    if (options_.rate_per_s > 0) {
        // Pace by the schedule: letter k may go at started + k / rate.
        auto due = started_ + duration_cast<Clock::duration>(duration<double>(
                                  static_cast<double>(submitted_) / options_.rate_per_s));
        std::this_thread::sleep_until(due);
    }
    Flight f = std::move(current_);
    current_ = Flight{};
    const auto records = outgoing_of(f);
    if (clients_.redis) {
        std::vector<OutgoingMessage> batch;
        batch.reserve(records.size());
        for (const auto& r : records) batch.push_back(to_outgoing_message(r));
        f.errors = clients_.send(std::move(batch));
    } else {
        f.delivery = clients_.the_producer().produce_batch(records);  // copies them
    }
    for (auto& p : f.letters) p.record = nullptr;
    held_.clear();
    submitted_ += static_cast<int64_t>(f.letters.size());
    flight_.push_back(std::move(f));
    if (!clients_.redis) clients_.the_producer().poll(milliseconds(0));
    while (!flight_.empty() &&
           (flight_.size() > 4 || !flight_.front().delivery || flight_.front().delivery->done()))
        settle_front();
}

// Settle.

void Replay::settle_front() {
    auto f = std::move(flight_.front());
    flight_.pop_front();
    const auto& config = clients_.config;
    if (f.delivery) {
        const auto give_up = Clock::now() + config.timeout + seconds(30);
        while (!clients_.the_producer().wait(*f.delivery, seconds(1)))
            if (Clock::now() > give_up)
                throw TimeoutError("replay: no acknowledgement from " +
                                   redacted_url(config.broker_url) +
                                   " in time; run it again to resume");
    }
    // Why letter k was not acknowledged; "" when it was.
    auto failure = [&](std::size_t k) {
        if (!f.delivery) return f.errors[k];
        const auto& r = f.delivery->reports()[k];
        return r.ok() ? std::string() : r.error_message();
    };
    const auto now = epoch_ms();
    const auto ledger = ledger_name(config);
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
        LedgerRecord record;
        record.shape = LedgerRecord::Shape::runs;
        record.state = "replayed";
        record.at_ms = now;
        record.replay_id = report_.replay_id;
        record.runs.reserve(runs.size());
        for (const auto& r : runs)
            record.runs.push_back({config.topic + ':' + std::to_string(r.partition), r.first,
                                   r.last, targets_[r.target]});
        records.push_back({ledger,
                           ledger_record_key(first_id, now),
                           encode_ledger_record(record),
                           {},
                           std::nullopt});
        runs.clear();
    };
    std::string_view first_id;
    for (std::size_t k = 0; k < f.letters.size(); ++k) {
        const auto& p = f.letters[k];
        const auto id = f.id(p);
        if (auto error = failure(k); !error.empty()) {
            if (first_error_.empty())
                first_error_ = "replay of " + std::string(id) + " to '" + targets_[p.target] +
                               "' failed: " + error;
            continue;
        }
        if (parked(p.replay_count))
            ++report_.parked;
        else
            ++report_.replayed;
        if (clients_.redis) {
            done.push_back({std::string(id), {"replayed", now, targets_[p.target]}});
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
    if (clients_.redis)
        write_ledger(clients_, done);  // only what was acknowledged
    else if (!records.empty()) {
        if (ledger_topic_.valid()) ledger_topic_.get();
        ledger_writes_.push_back(clients_.the_producer().produce_batch(std::move(records)));
    }
    acknowledged_ += static_cast<int64_t>(f.letters.size());
    if (options_.progress && !options_.progress(acknowledged_, total_)) report_.cancelled = true;
}

// The report's counts, the last acknowledgements and ledger writes awaited, and what stopped
// the replay early, if anything, raised.
void Replay::finish() {
    current_ = Flight{};  // letters never sent (stopped early): their records go now
    held_.clear();
    for (std::size_t t = 0; t < targets_.size(); ++t)
        if (per_target_[t] > 0) report_.per_target[targets_[t]] = per_target_[t];
    for (const auto& [fp, n] : per_fingerprint_)
        report_.per_fingerprint[std::string(fp.data(), fp.size())] = n;
    // What is left goes at once instead of after the producer's linger (flush overrides it);
    // the waits below then find the acknowledgements there.
    auto flush = [&] {
        if (clients_.producer) clients_.producer->flush(seconds(1));
    };
    flush();
    while (!flight_.empty()) settle_front();
    flush();
    const auto& config = clients_.config;
    for (const auto& w : ledger_writes_) {
        const auto give_up = Clock::now() + config.timeout + seconds(30);
        while (!clients_.the_producer().wait(*w, seconds(1)))
            if (Clock::now() > give_up)
                throw TimeoutError("replay: the ledger '" + ledger_name(config) +
                                   "' was not acknowledged in time; run the replay again (some "
                                   "letters may be sent twice)");
        w->raise_for_failures();
    }
    if (!missing_target_.empty())
        throw UsageError("replay: topic '" + missing_target_ + "' does not exist on " +
                         redacted_url(config.broker_url) +
                         "; create it, or choose another destination "
                         "(to / --to). " +
                         std::to_string(report_.replayed) +
                         " letters before it were replayed and recorded.");
    if (!first_error_.empty())
        throw TransportError(first_error_ + " (" + std::to_string(report_.replayed) +
                                 " replayed and recorded; run the replay again to resume)",
                             Retriable::unknown);
}

}  // namespace postroom::dlq::detail
