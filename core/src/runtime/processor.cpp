#include "postroom/runtime/processor.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <typeinfo>

#include "../detail/excerpt.hpp"
#include "../detail/structured_log.hpp"
#include "crash_points.hpp"
#include "forwarder.hpp"
#include "lanes.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/binding.hpp"
#include "postroom/runtime/dead_letter.hpp"
#include "postroom/transport.hpp"
#include "processor_state.hpp"

namespace postroom::runtime {

using namespace std::chrono;
using Clock = steady_clock;

namespace {

using postroom::detail::default_log;
using postroom::detail::escaped;
using postroom::detail::excerpt;

}  // namespace

struct Processor::Impl : detail::ProcessorState {
    using Outcome = detail::Outcome;

    explicit Impl(Handler h, BatchHandler bh)
        : handler(std::move(h)), batch_handler(std::move(bh)) {}

    Handler handler;             // one of the two
    BatchHandler batch_handler;  // (a batch handler gets the fresh events of a batch at once)
    detail::Forwarder forwarder{*this};  // dead letters and retries
    bool closed = false;
    Clock::time_point last_commit = Clock::now();
    std::mt19937_64 rng{std::random_device{}()};

    // Checks and completes `config`, opens the consumer and subscribes.
    void open(ProcessorConfig given);

    std::mutex rng_mutex;
    double unit_random() {
        std::lock_guard lock(rng_mutex);
        return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    }

    detail::Lanes lanes{
        *this, [this](const std::vector<const Message*>& batch) { return handle_batch(batch); }};

    // Handler outcomes of the most recent events (true = failed for good), for the flood guard.
    std::deque<bool> outcomes;

    mutable std::mutex outcomes_mutex;

    void record_outcome(bool failed) {
        if (config.flood_guard.max_failure_ratio <= 0.0) return;
        std::lock_guard lock(outcomes_mutex);
        outcomes.push_back(failed);
        while (outcomes.size() > config.flood_guard.window) outcomes.pop_front();
    }

    // Would dead-lettering one more event put the failure ratio over the limit?
    bool flood_tripped() const {
        const auto& g = config.flood_guard;
        if (g.max_failure_ratio <= 0.0) return false;
        std::lock_guard lock(outcomes_mutex);
        std::size_t failed = 1, total = 1;  // counting the event at hand
        for (auto it = outcomes.rbegin(); it != outcomes.rend() && total < g.window; ++it, ++total)
            failed += *it ? 1 : 0;
        if (total < g.min_events) return false;
        return static_cast<double>(failed) / static_cast<double>(total) > g.max_failure_ratio;
    }

    std::string idempotency_key(const Event& ev, const Message& m) {
        if (config.key_function) return config.key_function(ev, m);
        if (!config.key_header.empty()) {
            auto* h = find_header(m.headers, config.key_header);
            if (!h || !h->value)
                throw CodecError(config.key_header,
                                 "idempotency key header '" + config.key_header + "' is missing");
            return *h->value;
        }
        return ev.id;
    }

    // An event ready for its handler.
    struct Prepared {
        const Message* message;
        Event event;
        std::string key;
        Origin origin;  // where it was first consumed, attempts before this delivery
    };

    // Decodes `m` and computes its key; what cannot be handled (too large, undecodable, no
    // key) fills `failure` instead and returns nullopt.
    std::optional<Prepared> prepare(const Message& m, Failure& failure) {
        auto failed = [&] {
            failure.first_failure = now_rfc3339();
            failure.last_failure = failure.first_failure;
            failure.attempts = 0;
            return std::nullopt;
        };
        const std::size_t size = (m.value ? m.value->size() : 0) + (m.key ? m.key->size() : 0);
        if (size > config.max_payload_bytes) {
            failure.reason = DeadLetterReason::too_large;
            failure.error_type = "postroom::CodecError";
            failure.error_message = "payload of " + std::to_string(size) +
                                    " bytes exceeds max_payload_bytes (" +
                                    std::to_string(config.max_payload_bytes) + ")";
            return failed();
        }
        if (m.delivery_count > config.retry.max_attempts) {
            // Redis Streams count deliveries: the consumers that had it stopped (crashed)
            // while handling it each time; it may be what kills them.
            failure.reason = DeadLetterReason::retries_exhausted;
            failure.error_type = "postroom::DeliveryLimitExceeded";
            failure.error_message =
                "delivered " + std::to_string(m.delivery_count) +
                " times without being finished (each consumer holding it stopped before it "
                "was done); the retry policy allows " +
                std::to_string(config.retry.max_attempts) + " attempts";
            failed();
            failure.attempts = m.delivery_count - 1;
            return std::nullopt;
        }
        try {
            Prepared p{&m, kafka::to_event(m), {}, origin_of(m)};
            p.key = idempotency_key(p.event, m);
            return p;
        } catch (const CodecError& e) {
            failure.reason = DeadLetterReason::undecodable;
            failure.error_type = "postroom::CodecError";
            failure.error_message = e.what();
            return failed();
        }
    }

    // Runs `call` (a handler call); a failure fills `failure` and returns false with
    // `retryable` set.
    template <typename Call>
    bool guarded(Call&& call, Failure& failure, bool& retryable) {
        retryable = true;
        try {
            call();
            return true;
        } catch (const HandlerFailure& e) {
            failure.error_type = e.type();
            failure.error_message = e.what();
            failure.error_stack = e.stack();
            retryable = e.retryable();
        } catch (const NonRetryableError& e) {
            failure.error_type = "postroom::runtime::NonRetryableError";
            failure.error_message = e.what();
            retryable = false;
        } catch (const CodecError& e) {
            failure.error_type = "postroom::CodecError";
            failure.error_message = e.what();
            retryable = false;
        } catch (const std::exception& e) {
            failure.error_type = typeid(e).name();
            failure.error_message = e.what();
        }
        count([](Counters& c) { ++c.failed_attempts; });
        return false;
    }

    // Runs the handler for one event (a batch handler: a batch of one).
    bool call_handler(const Prepared& p, int attempt, stores::Transaction& tx, Failure& failure,
                      bool& retryable) {
        const int attempts = p.origin.attempts + attempt;
        return guarded(
            [&] {
                if (batch_handler) {
                    const std::vector<const Event*> events{&p.event};
                    const std::vector<const Message*> messages{p.message};
                    BatchHandlerContext ctx{messages, attempts, &tx};
                    batch_handler(events, ctx);
                } else {
                    HandlerContext ctx{*p.message, attempts, &tx};
                    handler(p.event, ctx);
                }
            },
            failure, retryable);
    }

    // What happens after attempt `attempt` of `p` failed: a dead letter (or a flood-guard
    // pause) when it may not be retried, else a backoff. Returns the outcome when the event is
    // finished (or abandoned); nullopt when the next attempt is due.
    std::optional<Outcome> after_failure(const Prepared& p, Failure& failure, int& attempt,
                                         bool retryable) {
        const Message& m = *p.message;
        failure.attempts = p.origin.attempts + attempt;
        failure.last_failure = now_rfc3339();
        if (attempt == 1)
            failure.first_failure =
                p.origin.first_failure.empty() ? failure.last_failure : p.origin.first_failure;
        if (!retryable || attempt >= config.retry.max_attempts) {
            if (flood_tripped()) {
                // Most recent events failed too: more likely a downstream outage than
                // poison. Hold this event instead of dead-lettering everything.
                log(3, "flood-guard-pause", m,
                    "failure ratio over the last " + std::to_string(config.flood_guard.window) +
                        " events exceeds " + std::to_string(config.flood_guard.max_failure_ratio) +
                        "; pausing " + std::to_string(config.flood_guard.pause.count()) +
                        " ms, then retrying instead of dead-lettering");
                count([](Counters& c) { ++c.flood_pauses; });
                if (!wait_for(config.flood_guard.pause)) return Outcome::abandoned;
                attempt = 1;
                return std::nullopt;
            }
            record_outcome(true);
            if (retryable && p.origin.level < static_cast<int>(config.retry_topic_delays.size()))
                return forwarder.schedule_retry(m, failure, p.origin.level + 1);
            failure.reason =
                retryable ? DeadLetterReason::retries_exhausted : DeadLetterReason::non_retryable;
            return forwarder.dead_letter(m, failure);
        }
        auto delay = config.retry.delay_before(attempt + 1, unit_random());
        log(4, "retry", m,
            "attempt " + std::to_string(attempt) + " failed: " + failure.error_type + ": " +
                failure.error_message + "; retrying in " + std::to_string(delay.count()) + " ms");
        count([](Counters& c) { ++c.retried; });
        if (!wait_for(delay)) return Outcome::abandoned;
        ++attempt;
        return std::nullopt;
    }

    // Handles one event in its own transaction, attempt after attempt. With `failed` set,
    // attempt `attempt` already failed (in a batch) with `failure`.
    Outcome handle_alone(const Prepared& p, Failure failure, int attempt,
                         std::optional<bool> failed) {
        const Message& m = *p.message;
        int store_round = 0;
        for (;;) {
            if (abandoning()) return Outcome::abandoned;
            bool retryable = failed.value_or(true);
            if (!failed) {
                std::unique_ptr<stores::Transaction> tx;
                try {
                    tx = config.store->begin();
                    if (!tx->claim(config.name, p.key)) {
                        tx->rollback();
                        count([](Counters& c) { ++c.duplicates; });
                        return Outcome::done;
                    }
                } catch (const Error& e) {
                    // The store is unavailable: not the event's fault, no attempt is used up.
                    tx.reset();
                    log(3, "store-blocked", m, e.what());
                    count([](Counters& c) { ++c.blocked_waits; });
                    if (!wait_for(blocked_backoff(store_round++))) return Outcome::abandoned;
                    continue;
                }
                count([](Counters& c) { ++c.in_flight; });
                bool ok = call_handler(p, attempt, *tx, failure, retryable);
                count([](Counters& c) { --c.in_flight; });
                if (ok) {
                    detail::crash_point("after-handler");
                    try {
                        tx->commit();
                        count([](Counters& c) { ++c.processed; });
                        record_outcome(false);
                        detail::crash_point("after-store-commit");
                        return Outcome::done;
                    } catch (const Error& e) {
                        if (e.retriable() != Retriable::no) {
                            // Failed or in doubt: retrying is safe, the claim dedupes it.
                            log(3, "store-blocked", m, std::string("commit: ") + e.what());
                            count([](Counters& c) { ++c.blocked_waits; });
                            if (!wait_for(blocked_backoff(store_round++)))
                                return Outcome::abandoned;
                            continue;
                        }
                        // The store refused what the handler wrote (a constraint checked at
                        // commit, a rejected Redis command): the event's failure.
                        failure.error_type = "postroom::StorageError";
                        failure.error_message = e.what();
                        retryable = false;
                        count([](Counters& c) { ++c.failed_attempts; });
                    }
                }
            }
            failed.reset();
            // tx is gone: the claim and the handler's writes are rolled back.
            if (auto outcome = after_failure(p, failure, attempt, retryable)) return *outcome;
        }
    }

    // How a batch transaction ended.
    struct SegmentResult {
        bool abandoned = false;
        bool deferred = false;  // committing in the background: see `deferred`
        bool split = false;     // the store refused the batch's commit: handle events alone
        std::size_t done = 0;   // events [0, done) are finished
        bool failed = false;    // event `done` failed its first attempt with:
        Failure failure;
        bool retryable = true;
    };

    // A batch's last segment whose store commit was started but whose outcome is not known
    // yet (a store that commits in the background: Redis). Its messages finish once it is:
    // in the next run_once, after its poll, so that the wait overlaps the poll. Meanwhile
    // the next claim on the store's connection runs after this commit.
    struct DeferredCommit {
        std::unique_ptr<stores::Transaction> tx;  // null: the commit failed, handle them again
        bool blocked = false;                     // it failed for a retriable reason
        std::vector<Message> owned;               // the polled batch the messages point into
        std::vector<const Message*> messages;     // the segment's messages, in order
        int64_t applied = 0, duplicates = 0;
    };
    std::optional<DeferredCommit> deferred;

    // The next batch, polled while the current batch's claim was in the store (no lanes):
    // run_once handles it instead of polling. Its messages are taken (not finished), so the
    // offsets commit holds back at them.
    std::optional<std::vector<Message>> ahead;

    // Polls the next batch without waiting, if none is there yet.
    void poll_ahead() {
        if (ahead || stop_requested.load()) return;
        auto more = consumer->poll_batch(config.batch_size, milliseconds(0));
        if (!more.empty()) ahead = std::move(more);
    }

    // Counts a segment whose store commit succeeded.
    void committed(int64_t applied, int64_t duplicates) {
        count([&](Counters& c) {
            c.processed += applied;
            c.duplicates += duplicates;
        });
        for (int64_t n = 0; n < applied; ++n) record_outcome(false);
        if (applied > 0) detail::crash_point("after-store-commit");
    }

    // Waits for the deferred commit's outcome and finishes its messages; returns how many
    // finished. If the commit failed, the events are handled again (their claims tell what
    // applied): now, or with `now` false (inside a rebalance, or closing) at the next
    // run_once. Messages of partitions in `gone` (being revoked) are left to their next owner.
    std::size_t settle(bool now, const std::vector<TopicPartition>& gone = {}) {
        if (!deferred) return 0;
        auto& d = *deferred;
        if (d.tx) {
            count([&](Counters& c) { c.in_flight -= static_cast<int64_t>(d.messages.size()); });
            try {
                d.tx->finish_commit();
            } catch (const Error& e) {
                d.tx.reset();
                log(3, e.retriable() == Retriable::yes ? "store-blocked" : "batch-refused",
                    *d.messages.front(),
                    std::string(e.what()) + "; handling the batch's events again");
                d.blocked = e.retriable() == Retriable::yes;
                if (d.blocked) count([](Counters& c) { ++c.blocked_waits; });
            }
            if (d.tx) {
                committed(d.applied, d.duplicates);
                for (const auto* m : d.messages) consumer->mark_done(*m);
                const auto n = d.messages.size();
                deferred.reset();
                return n;
            }
        }
        std::erase_if(d.messages, [&](const Message* m) {
            return std::find(gone.begin(), gone.end(), m->topic_partition()) != gone.end();
        });
        if (d.messages.empty()) deferred.reset();
        if (!now || !deferred || stop_requested.load()) return 0;
        auto again = std::move(d);
        deferred.reset();
        if (again.blocked && !wait_for(blocked_backoff(0))) return 0;
        return handle_batch(again.messages);
    }

    // Handles consecutive events in one store transaction: one batched claim, a savepoint per
    // event, one commit. Stops at the first handler failure; what came before commits. With
    // `overlap` (run_once without lanes), the next batch is polled while the claim is in the
    // store, and a commit the store runs in the background is left in `deferred`.
    SegmentResult handle_segment(const std::vector<Prepared>& segment, bool overlap = false) {
        std::vector<std::string> keys;
        keys.reserve(segment.size());
        for (const auto& p : segment) keys.push_back(p.key);
        int store_round = 0;
        for (;;) {
            SegmentResult r;
            if (abandoning()) {
                r.abandoned = true;
                return r;
            }
            const Message& first = *segment.front().message;
            std::unique_ptr<stores::Transaction> tx;
            std::vector<bool> claimed;
            int64_t duplicates = 0, applied = 0, in_hand = 0;
            try {
                tx = config.store->begin();
                if (overlap && store_round == 0 && !ahead) {
                    tx->start_claim_batch(config.name, keys);
                    poll_ahead();
                    claimed = tx->finish_claim_batch();
                } else {
                    claimed = tx->claim_batch(config.name, keys);
                }
                in_hand = static_cast<int64_t>(std::count(claimed.begin(), claimed.end(), true));
                count([&](Counters& c) { c.in_flight += in_hand; });
                auto give_back_from = [&](std::size_t from) {
                    std::vector<std::string> unused;
                    for (std::size_t k = from; k < segment.size(); ++k)
                        if (claimed[k]) unused.push_back(keys[k]);
                    tx->unclaim(config.name, unused);
                };
                if (batch_handler && segment.size() > 1) {
                    // One call with the batch's fresh events. If it fails, nothing of the
                    // batch commits and its events are handled one at a time, each with
                    // its own retries and dead letter. (A segment of one goes through the
                    // loop below: call_handler() gives a batch handler a batch of one.)
                    std::vector<const Event*> events;
                    std::vector<const Message*> messages;
                    for (std::size_t k = 0; k < segment.size(); ++k)
                        if (claimed[k]) {
                            events.push_back(&segment[k].event);
                            messages.push_back(segment[k].message);
                        } else {
                            ++duplicates;
                        }
                    Failure failure;
                    bool retryable = true;
                    BatchHandlerContext ctx{messages, 1, tx.get()};
                    if (!events.empty() &&
                        !guarded([&] { batch_handler(events, ctx); }, failure, retryable)) {
                        count([&](Counters& c) { c.in_flight -= std::exchange(in_hand, 0); });
                        tx.reset();  // rolls back the claims and whatever the handler wrote
                        log(4, "batch-failed", first,
                            failure.error_type + ": " + failure.error_message +
                                "; handling the batch's " + std::to_string(segment.size()) +
                                " events one at a time");
                        r.split = true;
                        return r;
                    }
                    applied = static_cast<int64_t>(events.size());
                    r.done = segment.size();
                } else {
                    for (; r.done < segment.size(); ++r.done) {
                        if (abandoning()) {
                            // Stopping: commit what was handled, leave the rest for
                            // redelivery.
                            give_back_from(r.done);
                            break;
                        }
                        if (!claimed[r.done]) {
                            ++duplicates;
                            continue;
                        }
                        tx->savepoint();
                        if (call_handler(segment[r.done], 1, *tx, r.failure, r.retryable)) {
                            ++applied;
                            continue;
                        }
                        // Undo this event's writes and give back the claims not used here.
                        r.failed = true;
                        tx->rollback_to_savepoint();
                        give_back_from(r.done);
                        break;
                    }
                }
                count([&](Counters& c) { c.in_flight -= std::exchange(in_hand, 0); });
                if (applied > 0) detail::crash_point("after-handler");
                if (!overlap || r.done < segment.size() || r.failed) {
                    tx->commit();
                } else if (tx->start_commit()) {
                    DeferredCommit d;
                    d.tx = std::move(tx);
                    d.applied = applied;
                    d.duplicates = duplicates;
                    for (const auto& p : segment) d.messages.push_back(p.message);
                    // Not finished until the outcome is known: in flight meanwhile.
                    count(
                        [&](Counters& c) { c.in_flight += static_cast<int64_t>(segment.size()); });
                    deferred = std::move(d);
                    r.deferred = true;
                    return r;
                }
            } catch (const Error& e) {
                count([&](Counters& c) { c.in_flight -= std::exchange(in_hand, 0); });
                tx.reset();  // rolls back: the handlers run again on the next round
                if (e.retriable() == Retriable::no && segment.size() > 1 && claimed.size()) {
                    log(3, "batch-refused", first,
                        std::string(e.what()) + "; handling the batch's events one at a time");
                    r = SegmentResult{};
                    r.split = true;
                    return r;
                }
                log(3, "store-blocked", first, e.what());
                count([](Counters& c) { ++c.blocked_waits; });
                if (!wait_for(blocked_backoff(store_round++))) {
                    r = SegmentResult{};
                    r.abandoned = true;
                    return r;
                }
                continue;
            }
            committed(applied, duplicates);
            return r;
        }
    }

    // Handles a polled batch in order; returns how many messages are finished (the rest, if
    // stopping, are left for redelivery).
    // Retry topics: partitions whose head event is not due yet, paused until it is.
    std::map<TopicPartition, int64_t> waiting;  // partition -> due, ms since the epoch
    std::set<std::string> retry_topics;

    static int64_t epoch_ms() {
        return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
    }

    // The messages of `batch` that may be handled now. A retry-topic event that is not due
    // pauses its partition and rewinds it to that event; the partition's later messages in
    // this batch are left for then.
    std::vector<const Message*> due_now(const std::vector<Message>& batch) {
        std::vector<const Message*> out;
        out.reserve(batch.size());
        std::set<TopicPartition> held;
        const int64_t now = epoch_ms();
        for (const auto& m : batch) {
            auto tp = m.topic_partition();
            if (held.count(tp)) continue;
            if (!retry_topics.empty() && retry_topics.count(m.topic)) {
                const int64_t due = origin_of(m).due_ms;
                if (due > now) {
                    consumer->pause({tp});
                    consumer->redeliver_from(m);
                    waiting[tp] = due;
                    held.insert(tp);
                    continue;
                }
            }
            out.push_back(&m);
        }
        return out;
    }

    void resume_due() {
        const int64_t now = epoch_ms();
        std::vector<TopicPartition> due;
        for (auto it = waiting.begin(); it != waiting.end();) {
            if (it->second <= now) {
                if (!lanes.holds_back(it->first)) due.push_back(it->first);
                it = waiting.erase(it);
            } else {
                ++it;
            }
        }
        consumer->resume(due);
    }

    // With `overlap` (see handle_segment), a last segment committing in the background is
    // left in `deferred` and not counted as finished.
    std::size_t handle_batch(const std::vector<const Message*>& batch, bool overlap = false) {
        std::size_t i = 0;
        auto finish = [&](std::size_t n) {
            for (std::size_t k = 0; k < n; ++k) consumer->mark_done(*batch[i + k]);
            i += n;
        };
        while (i < batch.size() && !abandoning()) {
            // The longest run of handleable events from i; a bad message ends it.
            std::vector<Prepared> segment;
            Failure bad;
            bool has_bad = false;
            for (std::size_t j = i; j < batch.size(); ++j) {
                auto p = prepare(*batch[j], bad);
                if (!p) {
                    has_bad = true;
                    break;
                }
                segment.push_back(std::move(*p));
            }
            if (segment.empty()) {
                if (has_bad && forwarder.dead_letter(*batch[i], bad) == Outcome::abandoned) break;
                finish(1);
                continue;
            }
            auto r = handle_segment(segment, overlap && !has_bad);
            if (r.deferred) break;
            if (r.abandoned) break;
            if (r.split) {
                for (const auto& p : segment) {
                    if (handle_alone(p, Failure{}, 1, std::nullopt) == Outcome::abandoned) return i;
                    finish(1);
                }
                continue;
            }
            finish(r.done);
            if (r.failed) {
                if (handle_alone(segment[r.done], r.failure, 1, r.retryable) == Outcome::abandoned)
                    break;
                finish(1);
            }
        }
        return i;
    }

    std::optional<Clock::time_point> last_purge;

    // Applies the retention to the store; a store failure here is logged, not fatal (the
    // next interval tries again).
    void purge_if_due() {
        if (config.retention.count() <= 0) return;
        if (last_purge && Clock::now() - *last_purge < config.purge_interval) return;
        last_purge = Clock::now();
        try {
            auto n = static_cast<int64_t>(config.store->purge_older_than(config.retention));
            count([n](Counters& c) { c.purged_marks += n; });
        } catch (const Error& e) {
            (config.log ? config.log : default_log)(
                3, "postroom level=error processor=\"" + escaped(config.name) +
                       "\" event=\"purge-failed\" detail=\"" + escaped(e.what()) + "\"");
        }
    }

    void commit_if_due(bool force) {
        if (!force && Clock::now() - last_commit < config.commit_interval) return;
        if (consumer->commit() > 0) detail::crash_point("after-offset-commit");
        last_commit = Clock::now();
    }
};

void Processor::Impl::open(ProcessorConfig given) {
    auto& c = given;
    if (c.name.empty())
        throw ConfigurationError("processor name is required (the idempotency scope)");
    if (c.topics.empty()) throw ConfigurationError("processor needs at least one topic");
    if (c.batch_size == 0) throw ConfigurationError("processor batch_size must be positive");
    if (c.concurrency == 0 || c.concurrency > 256)
        throw ConfigurationError("processor concurrency must be between 1 and 256");
    if (c.lane_queue_messages < 2 || c.lane_queue_bytes < 2)
        throw ConfigurationError("lane_queue_messages and lane_queue_bytes must be at least 2");
    c.retry.validate();
    if (c.flood_guard.max_failure_ratio < 0.0 || c.flood_guard.max_failure_ratio >= 1.0)
        throw ConfigurationError("flood_guard max_failure_ratio must be in [0, 1) (0 = off)");
    if (c.flood_guard.max_failure_ratio > 0.0 &&
        (c.flood_guard.window == 0 || c.flood_guard.min_events > c.flood_guard.window))
        throw ConfigurationError("flood_guard needs 0 < min_events <= window");
    if (c.group_id.empty()) c.group_id = c.name;
    if (c.dead_letter_topic.empty()) c.dead_letter_topic = c.topics.front() + ".dlq";
    for (const auto& t : c.topics)
        if (t == c.dead_letter_topic)
            throw ConfigurationError("the dead-letter topic '" + t +
                                     "' must not be one of the processor's own topics");
    for (auto delay : c.retry_topic_delays)
        if (delay.count() <= 0) throw ConfigurationError("retry_topic_delays must all be positive");
    for (const auto& t : c.topics)
        for (const auto& u : c.topics)
            if (u.rfind(t + ".retry.", 0) == 0)
                throw ConfigurationError("topic '" + u + "' is a retry topic of '" + t +
                                         "': subscribe to '" + t +
                                         "' only; its retry topics are consumed with it");
    if (!c.store) c.store = std::make_shared<stores::MemoryStore>();
    // A name that can never be a topic is a configuration error, not "unknown topic".
    for (const auto& t : c.topics) {
        transport::check_topic_name(c.broker_url, t);
        for (std::size_t level = 1; level <= c.retry_topic_delays.size(); ++level)
            transport::check_topic_name(c.broker_url, retry_topic_name(t, static_cast<int>(level)));
    }
    transport::check_topic_name(c.broker_url, c.dead_letter_topic);
    config = std::move(given);

    transport::ConsumerOptions co;
    co.broker_url = config.broker_url;
    co.group_id = config.group_id;
    co.client_id = config.name;
    co.properties = config.consumer_properties;
    co.log = config.log;
    consumer = transport::open_consumer(co);
    auto subscribed = config.topics;
    for (const auto& t : config.topics)
        for (std::size_t level = 1; level <= config.retry_topic_delays.size(); ++level) {
            subscribed.push_back(retry_topic_name(t, static_cast<int>(level)));
            retry_topics.insert(subscribed.back());
        }
    transport::RebalanceListener listener;
    auto* impl = this;
    // A partition comes back unpaused: whatever waited on it is read again and re-paused
    // if still not due.
    listener.on_assigned = [impl](const std::vector<TopicPartition>& tps) {
        for (const auto& tp : tps) impl->waiting.erase(tp);
        if (!impl->retry_topics.empty() || !impl->lanes.empty()) impl->consumer->resume(tps);
    };
    listener.on_revoked = [impl](const std::vector<TopicPartition>& tps) {
        for (const auto& tp : tps) impl->waiting.erase(tp);
        // Both before the revoked partitions' offsets are committed.
        impl->settle(false, tps);
        impl->lanes.release_partitions(tps);
        if (impl->ahead)  // their next owner reads them
            std::erase_if(*impl->ahead, [&](const Message& m) {
                return std::find(tps.begin(), tps.end(), m.topic_partition()) != tps.end();
            });
    };
    listener.on_lost = listener.on_revoked;
    consumer->subscribe(subscribed, std::move(listener));
    if (config.concurrency > 1) lanes.start(config.concurrency);
}

Processor::~Processor() {
    if (impl_) {
        try {
            close();
        } catch (...) {
            // Destructors do not throw; close() explicitly to see errors.
        }
    }
}

Processor::Processor(ProcessorConfig config, Handler handler) {
    if (!handler) throw ConfigurationError("processor needs a handler");
    impl_ = std::make_unique<Impl>(std::move(handler), BatchHandler{});
    impl_->open(std::move(config));
}

Processor::Processor(ProcessorConfig config, BatchHandler handler) {
    if (!handler) throw ConfigurationError("processor needs a handler");
    impl_ = std::make_unique<Impl>(Handler{}, std::move(handler));
    impl_->open(std::move(config));
}

Processor::Processor(Processor&&) noexcept = default;
Processor& Processor::operator=(Processor&&) noexcept = default;

std::size_t Processor::run_once(milliseconds timeout) {
    auto& impl = *impl_;
    if (impl.closed) throw UsageError("the processor is closed");
    if (impl.stop_requested.load()) {
        const auto finished = impl.settle(false);
        impl.forwarder.rethrow_fatal();
        return finished;
    }
    if (!impl.waiting.empty()) impl.resume_due();
    if (impl.lanes.holding_back()) {
        // Lanes are draining: look again soon rather than sleeping on paused partitions.
        impl.lanes.resume_drained(impl.waiting);
        if (impl.lanes.holding_back()) timeout = std::min(timeout, milliseconds(5));
    }
    const auto deadline = Clock::now() + timeout;
    const bool lanes_stuck = impl.lanes.fed() && !impl.lanes.wait_for_room(timeout);
    auto left = [&] {
        return std::max(milliseconds(0),
                        std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
    };
    // A commit left in the background by the last batch: poll what is there without waiting,
    // then settle it, so that its outcome does not wait for new messages (if it finished
    // events and nothing new came, run_once returns at once).
    const bool settling = impl.deferred.has_value();
    std::vector<Message> batch;
    if (impl.ahead) {
        batch = std::move(*impl.ahead);
        impl.ahead.reset();
    } else {
        batch =
            impl.consumer->poll_batch(impl.config.batch_size, settling ? milliseconds(0) : left());
    }
    // Stopping leaves the unfinished rest of the batch uncommitted: the group redelivers it.
    std::size_t finished = impl.settle(true);
    if (settling && batch.empty() && finished == 0 && !impl.stop_requested.load())
        batch = impl.consumer->poll_batch(impl.config.batch_size, left());
    if (impl.lanes.empty()) {
        // One commit in the background at a time (one still there failed while stopping).
        const bool overlap = !impl.deferred;
        finished += impl.handle_batch(impl.due_now(batch), overlap);
        if (overlap && impl.deferred) impl.deferred->owned = std::move(batch);
    } else {
        impl.lanes.dispatch(batch, impl.due_now(batch), lanes_stuck);
        finished += impl.lanes.take_finished();
    }
    if (impl.config.on_wait && batch.empty()) impl.config.on_wait();
    impl.commit_if_due(impl.stop_requested.load());
    impl.purge_if_due();
    impl.forwarder.rethrow_fatal();
    return finished;
}

void Processor::run() {
    while (!impl_->stop_requested.load()) run_once(milliseconds(100));
    throw_if_failed();
}

void Processor::throw_if_failed() const {
    impl_->forwarder.rethrow_fatal();
}

void Processor::stop() noexcept {
    impl_->stop_requested.store(true);
}

bool Processor::stopping() const noexcept {
    return impl_->stop_requested.load();
}

void Processor::close() {
    if (!impl_ || impl_->closed) return;
    impl_->closed = true;
    impl_->stop_requested.store(true);
    impl_->settle(false);
    impl_->lanes.stop();       // they finish the event in hand; the rest is redelivered
    impl_->consumer->close();  // commits what is done, leaves the group
    impl_->forwarder.close();
}

Counters Processor::counters() const {
    Counters c;
    {
        std::lock_guard lock(impl_->counters_mutex);
        c = impl_->counts;
    }
    if (!impl_->closed) c.lag = impl_->consumer->lag();
    return c;
}

const ProcessorConfig& Processor::config() const noexcept {
    return impl_->config;
}

}  // namespace postroom::runtime
