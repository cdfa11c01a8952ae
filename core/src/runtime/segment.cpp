#include "segment.hpp"

#include <algorithm>
#include <chrono>
#include <typeinfo>
#include <utility>

#include "crash_points.hpp"
#include "postroom/binding.hpp"
#include "postroom/error.hpp"

namespace postroom::runtime::detail {

using namespace std::chrono;

std::string SegmentRunner::idempotency_key(const Event& ev, const Message& m) {
    if (state_.config.key_function) return state_.config.key_function(ev, m);
    if (!state_.config.key_header.empty()) {
        auto* h = find_header(m.headers, state_.config.key_header);
        if (!h || !h->value)
            throw CodecError(
                state_.config.key_header,
                "idempotency key header '" + state_.config.key_header + "' is missing");
        return *h->value;
    }
    return ev.id;
}

// Decodes `m` and computes its key; what cannot be handled (too large, undecodable, no
// key) fills `failure` instead and returns nullopt.
std::optional<SegmentRunner::Prepared> SegmentRunner::prepare(const Message& m, Failure& failure) {
    auto failed = [&] {
        failure.first_failure = now_rfc3339();
        failure.last_failure = failure.first_failure;
        failure.attempts = 0;
        return std::nullopt;
    };
    const std::size_t size = (m.value ? m.value->size() : 0) + (m.key ? m.key->size() : 0);
    if (size > state_.config.max_payload_bytes) {
        failure.reason = DeadLetterReason::too_large;
        failure.error_type = "postroom::CodecError";
        failure.error_message = "payload of " + std::to_string(size) +
                                " bytes exceeds max_payload_bytes (" +
                                std::to_string(state_.config.max_payload_bytes) + ")";
        return failed();
    }
    if (m.delivery_count > state_.config.retry.max_attempts) {
        // Redis Streams count deliveries: the consumers that had it stopped (crashed)
        // while handling it each time; it may be what kills them.
        failure.reason = DeadLetterReason::retries_exhausted;
        failure.error_type = "postroom::DeliveryLimitExceeded";
        failure.error_message =
            "delivered " + std::to_string(m.delivery_count) +
            " times without being finished (each consumer holding it stopped before it "
            "was done); the retry policy allows " +
            std::to_string(state_.config.retry.max_attempts) + " attempts";
        failed();
        failure.attempts = m.delivery_count - 1;
        return std::nullopt;
    }
    try {
        Prepared p{&m, cloudevents::to_event(m), {}, origin_of(m)};
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
bool SegmentRunner::guarded(Call&& call, Failure& failure, bool& retryable) {
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
    state_.count([](Counters& c) { ++c.failed_attempts; });
    return false;
}

// Runs the handler for one event (a batch handler: a batch of one).
bool SegmentRunner::call_handler(const Prepared& p, int attempt, stores::Transaction& tx,
                                 Failure& failure, bool& retryable) {
    const int attempts = p.origin.attempts + attempt;
    return guarded(
        [&] {
            if (batch_handler_) {
                const std::vector<const Event*> events{&p.event};
                const std::vector<const Message*> messages{p.message};
                BatchHandlerContext ctx{messages, attempts, &tx};
                batch_handler_(events, ctx);
            } else {
                HandlerContext ctx{*p.message, attempts, &tx};
                handler_(p.event, ctx);
            }
        },
        failure, retryable);
}

// Handles one event in its own transaction, attempt after attempt. With `failed` set,
// attempt `attempt` already failed (in a batch) with `failure`.
Outcome SegmentRunner::handle_alone(const Prepared& p, Failure failure, int attempt,
                                    std::optional<bool> failed) {
    const Message& m = *p.message;
    int store_round = 0;
    for (;;) {
        if (state_.abandoning()) return Outcome::abandoned;
        bool retryable = failed.value_or(true);
        if (!failed) {
            std::unique_ptr<stores::Transaction> tx;
            try {
                tx = state_.config.store->begin();
                if (!tx->claim(state_.config.name, p.key)) {
                    tx->rollback();
                    state_.count([](Counters& c) { ++c.duplicates; });
                    return Outcome::done;
                }
            } catch (const Error& e) {
                // The store is unavailable: not the event's fault, no attempt is used up.
                tx.reset();
                state_.log(3, "store-blocked", m, e.what());
                state_.count([](Counters& c) { ++c.blocked_waits; });
                if (!state_.wait_for(state_.blocked_backoff(store_round++)))
                    return Outcome::abandoned;
                continue;
            }
            state_.count([](Counters& c) { ++c.in_flight; });
            bool ok = call_handler(p, attempt, *tx, failure, retryable);
            state_.count([](Counters& c) { --c.in_flight; });
            if (ok) {
                detail::crash_point("after-handler");
                try {
                    tx->commit();
                    state_.count([](Counters& c) { ++c.processed; });
                    routing_.record_outcome(false);
                    detail::crash_point("after-store-commit");
                    return Outcome::done;
                } catch (const Error& e) {
                    if (e.retriable() != Retriable::no) {
                        // Failed or in doubt: retrying is safe, the claim dedupes it.
                        state_.log(3, "store-blocked", m, std::string("commit: ") + e.what());
                        state_.count([](Counters& c) { ++c.blocked_waits; });
                        if (!state_.wait_for(state_.blocked_backoff(store_round++)))
                            return Outcome::abandoned;
                        continue;
                    }
                    // The store refused what the handler wrote (a constraint checked at
                    // commit, a rejected Redis command): the event's failure.
                    failure.error_type = "postroom::StorageError";
                    failure.error_message = e.what();
                    retryable = false;
                    state_.count([](Counters& c) { ++c.failed_attempts; });
                }
            }
        }
        failed.reset();
        // tx is gone: the claim and the handler's writes are rolled back.
        if (auto outcome = routing_.after_failure(m, p.origin, failure, attempt, retryable))
            return *outcome;
    }
}

// Polls the next batch without waiting, if none is there yet.
void SegmentRunner::poll_ahead() {
    if (ahead_ || state_.stop_requested.load()) return;
    auto more = state_.consumer->poll_batch(state_.config.batch_size, milliseconds(0));
    if (!more.empty()) ahead_ = std::move(more);
}

// Counts a segment whose store commit succeeded.
void SegmentRunner::committed(int64_t applied, int64_t duplicates) {
    state_.count([&](Counters& c) {
        c.processed += applied;
        c.duplicates += duplicates;
    });
    for (int64_t n = 0; n < applied; ++n) routing_.record_outcome(false);
    if (applied > 0) detail::crash_point("after-store-commit");
}

std::size_t SegmentRunner::settle(bool now, const std::vector<TopicPartition>& gone) {
    if (!deferred_) return 0;
    auto& d = *deferred_;
    if (d.tx) {
        state_.count([&](Counters& c) { c.in_flight -= static_cast<int64_t>(d.messages.size()); });
        try {
            d.tx->finish_commit();
        } catch (const Error& e) {
            d.tx.reset();
            state_.log(3, e.retriable() == Retriable::yes ? "store-blocked" : "batch-refused",
                       *d.messages.front(),
                       std::string(e.what()) + "; handling the batch's events again");
            d.blocked = e.retriable() == Retriable::yes;
            if (d.blocked) state_.count([](Counters& c) { ++c.blocked_waits; });
        }
        if (d.tx) {
            committed(d.applied, d.duplicates);
            for (const auto* m : d.messages) state_.consumer->mark_done(*m);
            const auto n = d.messages.size();
            deferred_.reset();
            return n;
        }
    }
    std::erase_if(d.messages, [&](const Message* m) {
        return std::find(gone.begin(), gone.end(), m->topic_partition()) != gone.end();
    });
    if (d.messages.empty()) deferred_.reset();
    if (!now || !deferred_ || state_.stop_requested.load()) return 0;
    auto again = std::move(d);
    deferred_.reset();
    if (again.blocked && !state_.wait_for(state_.blocked_backoff(0))) return 0;
    return handle_batch(again.messages);
}

// Handles consecutive events in one store transaction: one batched claim, a savepoint per
// event, one commit. Stops at the first handler failure; what came before commits. With
// `overlap` (run_once without lanes), the next batch is polled while the claim is in the
// store, and a commit the store runs in the background is left in `deferred_`.
SegmentRunner::SegmentResult SegmentRunner::handle_segment(const std::vector<Prepared>& segment,
                                                           bool overlap) {
    std::vector<std::string> keys;
    keys.reserve(segment.size());
    for (const auto& p : segment) keys.push_back(p.key);
    int store_round = 0;
    for (;;) {
        SegmentResult r;
        if (state_.abandoning()) {
            r.abandoned = true;
            return r;
        }
        const Message& first = *segment.front().message;
        std::unique_ptr<stores::Transaction> tx;
        std::vector<bool> claimed;
        int64_t duplicates = 0, applied = 0, in_hand = 0;
        try {
            tx = state_.config.store->begin();
            if (overlap && store_round == 0 && !ahead_) {
                tx->start_claim_batch(state_.config.name, keys);
                poll_ahead();
                claimed = tx->finish_claim_batch();
            } else {
                claimed = tx->claim_batch(state_.config.name, keys);
            }
            in_hand = static_cast<int64_t>(std::count(claimed.begin(), claimed.end(), true));
            state_.count([&](Counters& c) { c.in_flight += in_hand; });
            auto give_back_from = [&](std::size_t from) {
                std::vector<std::string> unused;
                for (std::size_t k = from; k < segment.size(); ++k)
                    if (claimed[k]) unused.push_back(keys[k]);
                tx->unclaim(state_.config.name, unused);
            };
            if (batch_handler_ && segment.size() > 1) {
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
                    !guarded([&] { batch_handler_(events, ctx); }, failure, retryable)) {
                    state_.count([&](Counters& c) { c.in_flight -= std::exchange(in_hand, 0); });
                    tx.reset();  // rolls back the claims and whatever the handler wrote
                    state_.log(4, "batch-failed", first,
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
                    if (state_.abandoning()) {
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
            state_.count([&](Counters& c) { c.in_flight -= std::exchange(in_hand, 0); });
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
                state_.count(
                    [&](Counters& c) { c.in_flight += static_cast<int64_t>(segment.size()); });
                deferred_ = std::move(d);
                r.deferred = true;
                return r;
            }
        } catch (const Error& e) {
            state_.count([&](Counters& c) { c.in_flight -= std::exchange(in_hand, 0); });
            tx.reset();  // rolls back: the handlers run again on the next round
            if (e.retriable() == Retriable::no && segment.size() > 1 && claimed.size()) {
                state_.log(3, "batch-refused", first,
                           std::string(e.what()) + "; handling the batch's events one at a time");
                r = SegmentResult{};
                r.split = true;
                return r;
            }
            state_.log(3, "store-blocked", first, e.what());
            state_.count([](Counters& c) { ++c.blocked_waits; });
            if (!state_.wait_for(state_.blocked_backoff(store_round++))) {
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

std::size_t SegmentRunner::handle_batch(const std::vector<const Message*>& batch, bool overlap) {
    std::size_t i = 0;
    auto finish = [&](std::size_t n) {
        for (std::size_t k = 0; k < n; ++k) state_.consumer->mark_done(*batch[i + k]);
        i += n;
    };
    while (i < batch.size() && !state_.abandoning()) {
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
            if (has_bad && routing_.dead_letter(*batch[i], bad) == Outcome::abandoned) break;
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

void SegmentRunner::drop_ahead(const std::vector<TopicPartition>& tps) {
    if (ahead_)  // their next owner reads them
        std::erase_if(*ahead_, [&](const Message& m) {
            return std::find(tps.begin(), tps.end(), m.topic_partition()) != tps.end();
        });
}

}  // namespace postroom::runtime::detail
