#pragma once
// The segment transaction (internal): how the processor handles a polled batch. Per message:
// size check, CloudEvent decode and idempotency key; the longest run of good messages is a
// segment, handled in one store transaction (one batched claim, a savepoint per event, one
// commit). A failing event continues alone (handle_alone()), attempt after attempt, and what
// still fails goes where the failure routing says. Offsets are marked done only for finished
// messages.
//
// Thread-safety: without lanes, everything runs on the polling thread; with lanes,
// handle_batch() runs on each lane's thread (for its own messages, without overlap), and
// the deferred commit and the batch polled ahead are not used.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "failure_routing.hpp"
#include "postroom/event.hpp"
#include "postroom/message.hpp"
#include "postroom/runtime/dead_letter.hpp"
#include "postroom/runtime/processor.hpp"
#include "postroom/stores/store.hpp"
#include "processor_state.hpp"

namespace postroom::runtime::detail {

class SegmentRunner {
public:
    // One of `handler` and `batch_handler` is set (a batch handler gets the fresh events of
    // a batch at once).
    SegmentRunner(ProcessorState& state, FailureRouting& routing, Handler handler,
                  BatchHandler batch_handler)
        : state_(state),
          routing_(routing),
          handler_(std::move(handler)),
          batch_handler_(std::move(batch_handler)) {}

    // Handles a polled batch in order; returns how many messages are finished (the rest, if
    // stopping, are left for redelivery). With `overlap` (run_once without lanes), the next
    // batch is polled while the claim is in the store, and a last segment committing in the
    // background is left deferred and not counted as finished.
    std::size_t handle_batch(const std::vector<const Message*>& batch, bool overlap = false);

    // Waits for the deferred commit's outcome and finishes its messages; returns how many
    // finished. If the commit failed, the events are handled again (their claims tell what
    // applied): now, or with `now` false (inside a rebalance, or closing) at the next
    // run_once. Messages of partitions in `gone` (being revoked) are left to their next owner.
    std::size_t settle(bool now, const std::vector<TopicPartition>& gone = {});

    // Is a commit running in the background (see settle())?
    bool deferred() const { return deferred_.has_value(); }
    // The deferred commit keeps the polled batch its messages point into.
    void keep_polled(std::vector<Message>& batch) { deferred_->owned = std::move(batch); }

    // The batch polled ahead, if any: run_once handles it instead of polling.
    std::optional<std::vector<Message>> take_ahead() {
        auto batch = std::move(ahead_);
        ahead_.reset();
        return batch;
    }
    // Drops the messages polled ahead from partitions taken away: their next owner reads them.
    void drop_ahead(const std::vector<TopicPartition>& tps);

private:
    // An event ready for its handler.
    struct Prepared {
        const Message* message;
        Event event;
        std::string key;
        Origin origin;  // where it was first consumed, attempts before this delivery
    };

    // How a batch transaction ended.
    struct SegmentResult {
        bool abandoned = false;
        bool deferred = false;  // committing in the background: see `deferred_`
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

    std::string idempotency_key(const Event& ev, const Message& m);
    std::optional<Prepared> prepare(const Message& m, Failure& failure);
    template <typename Call>
    bool guarded(Call&& call, Failure& failure, bool& retryable);
    bool call_handler(const Prepared& p, int attempt, stores::Transaction& tx, Failure& failure,
                      bool& retryable);
    Outcome handle_alone(const Prepared& p, Failure failure, int attempt,
                         std::optional<bool> failed);
    void poll_ahead();
    void committed(int64_t applied, int64_t duplicates);
    SegmentResult handle_segment(const std::vector<Prepared>& segment, bool overlap = false);

    ProcessorState& state_;
    FailureRouting& routing_;
    Handler handler_;             // one of the two
    BatchHandler batch_handler_;  // (a batch handler gets the fresh events of a batch at once)
    std::optional<DeferredCommit> deferred_;
    // The next batch, polled while the current batch's claim was in the store (no lanes):
    // run_once handles it instead of polling. Its messages are taken (not finished), so the
    // offsets commit holds back at them.
    std::optional<std::vector<Message>> ahead_;
};

}  // namespace postroom::runtime::detail
