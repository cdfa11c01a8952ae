#pragma once
// The processor's lanes (internal, concurrency > 1): each runs the handler for its share of
// the partitions on its own thread, in order per partition. The polling thread feeds them
// (dispatch()); a lane whose queue is full has its partitions paused until it is down to
// half (resume_drained()).
//
// Thread-safety: everything but the lanes' own work belongs to the polling thread (and the
// rebalance callbacks it runs). The work function runs on the lanes' threads.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "postroom/message.hpp"
#include "processor_state.hpp"

namespace postroom::runtime::detail {

class Lanes {
public:
    // Handles a lane's messages in order; returns how many of them are finished (the rest
    // go back to the front of the lane's queue, unless revoked meanwhile).
    using Work = std::function<std::size_t(const std::vector<const Message*>&)>;

    Lanes(ProcessorState& state, Work work) : state_(state), work_(std::move(work)) {}

    // Starts `n` lane threads.
    void start(std::size_t n);
    // Stops the lanes: they finish the event in hand; the rest is redelivered.
    void stop();
    // No lanes: the handler runs on the polling thread.
    bool empty() const { return lanes_.empty(); }

    // Partitions taken away (revoked or lost): their queued messages are dropped, and lanes
    // working on them stop at the next event boundary; returns once no lane handles them any
    // more, so what is committed next is final.
    void release_partitions(const std::vector<TopicPartition>& tps);

    // Did the last non-empty poll give messages to lanes?
    bool fed() const { return !fed_lanes_.empty(); }
    // When the last poll fed only lanes whose queues are full, polling more only fills them
    // further: waits up to `timeout` for one of them to take work. Returns false if none did
    // (slow handlers).
    bool wait_for_room(std::chrono::milliseconds timeout);
    // Hands polled messages (`due`, pointing into `batch`) to their lanes; see lanes.cpp.
    void dispatch(std::vector<Message>& batch, const std::vector<const Message*>& due,
                  bool lanes_stuck);
    // How many messages the lanes finished since the last call.
    std::size_t take_finished() { return finished_by_lanes_.exchange(0); }

    // Partitions paused because their lane's queue is full.
    bool holding_back() const { return !held_back_.empty(); }
    bool holds_back(const TopicPartition& tp) const { return held_back_.count(tp) > 0; }
    // Resumes held-back partitions whose lane has drained to half its bounds, except those
    // in `waiting` (retry-topic partitions whose head event is not due yet).
    void resume_drained(const std::map<TopicPartition, int64_t>& waiting);

private:
    struct Lane {
        std::thread thread;
        std::mutex mutex;
        std::condition_variable wake, idle;
        std::deque<Message> queue;
        std::size_t queued_bytes = 0;
        bool busy = false;                 // handling messages taken from the queue
        std::set<TopicPartition> revoked;  // being taken away: drop their messages
        std::atomic<bool> interrupt{false};
        bool quit = false;
    };

    Lane& lane_of(const TopicPartition& tp);
    void lane_main(Lane& lane);
    bool full(Lane& lane);

    ProcessorState& state_;
    Work work_;
    std::vector<std::unique_ptr<Lane>> lanes_;
    std::set<TopicPartition> held_back_;  // paused because their lane's queue is full
    // Lanes signal `room_` whenever they take work from their queue.
    std::mutex room_mutex_;
    std::condition_variable room_;
    std::vector<Lane*> fed_lanes_;  // the lanes the last non-empty poll gave messages to
    std::atomic<std::size_t> finished_by_lanes_{0};
};

}  // namespace postroom::runtime::detail
