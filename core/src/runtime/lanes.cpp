#include "lanes.hpp"

#include <algorithm>

namespace postroom::runtime::detail {

using namespace std::chrono;

namespace {

std::size_t size_of(const Message& m) {
    std::size_t n = sizeof(Message) + (m.key ? m.key->size() : 0) + (m.value ? m.value->size() : 0);
    for (const auto& h : m.headers) n += h.name.size() + (h.value ? h.value->size() : 0);
    return n;
}

}  // namespace

Lanes::Lane& Lanes::lane_of(const TopicPartition& tp) {
    const auto h = std::hash<std::string>{}(tp.topic) * 31 + static_cast<std::size_t>(tp.partition);
    return *lanes_[h % lanes_.size()];
}

void Lanes::lane_main(Lane& lane) {
    ProcessorState::lane_interrupt = &lane.interrupt;
    const std::size_t take = state_.config.batch_size;
    for (;;) {
        std::vector<Message> work;
        {
            std::unique_lock lock(lane.mutex);
            // Not while interrupted or stopping: the work would come straight back.
            lane.wake.wait(lock, [&] {
                return lane.quit ||
                       (!lane.queue.empty() && !lane.interrupt && !state_.stop_requested.load());
            });
            if (lane.quit) return;
            while (!lane.queue.empty() && work.size() < take) {
                lane.queued_bytes -= size_of(lane.queue.front());
                work.push_back(std::move(lane.queue.front()));
                lane.queue.pop_front();
            }
            lane.busy = true;
        }
        { std::lock_guard lock(room_mutex_); }
        room_.notify_all();
        std::vector<const Message*> batch;
        batch.reserve(work.size());
        for (const auto& m : work) batch.push_back(&m);
        const std::size_t finished = work_(batch);
        finished_by_lanes_ += finished;
        std::lock_guard lock(lane.mutex);
        // Interrupted (revoked partitions, or stopping): what was not finished goes back to
        // the front of the queue, in order, except what was revoked.
        for (std::size_t k = work.size(); k > finished; --k)
            if (!lane.revoked.count(work[k - 1].topic_partition())) {
                lane.queued_bytes += size_of(work[k - 1]);
                lane.queue.push_front(std::move(work[k - 1]));
            }
        lane.busy = false;
        lane.idle.notify_all();
    }
}

void Lanes::start(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) lanes_.push_back(std::make_unique<Lane>());
    for (auto& lane : lanes_) lane->thread = std::thread([this, l = lane.get()] { lane_main(*l); });
}

void Lanes::stop() {
    for (auto& lane : lanes_) {
        std::lock_guard lock(lane->mutex);
        lane->quit = true;
        lane->interrupt = true;
        lane->wake.notify_all();
    }
    for (auto& lane : lanes_)
        if (lane->thread.joinable()) lane->thread.join();
}

void Lanes::release_partitions(const std::vector<TopicPartition>& tps) {
    if (lanes_.empty()) return;
    std::set<TopicPartition> gone(tps.begin(), tps.end());
    for (const auto& tp : tps) held_back_.erase(tp);
    for (auto& lane : lanes_) {
        std::unique_lock lock(lane->mutex);
        std::erase_if(lane->queue, [&](const Message& m) {
            if (!gone.count(m.topic_partition())) return false;
            lane->queued_bytes -= size_of(m);
            return true;
        });
        if (!lane->busy) continue;
        lane->revoked = gone;
        lane->interrupt = true;
        lane->idle.wait(lock, [&] { return !lane->busy; });
        lane->interrupt = state_.stop_requested.load();
        lane->revoked.clear();
        if (!lane->queue.empty()) lane->wake.notify_all();
    }
}

bool Lanes::full(Lane& lane) {
    std::lock_guard lock(lane.mutex);
    return lane.queue.size() >= state_.config.lane_queue_messages ||
           lane.queued_bytes >= state_.config.lane_queue_bytes;
}

bool Lanes::wait_for_room(milliseconds timeout) {
    auto all_full = [&] {
        return std::all_of(fed_lanes_.begin(), fed_lanes_.end(), [&](Lane* l) { return full(*l); });
    };
    std::unique_lock lock(room_mutex_);
    return room_.wait_for(lock, timeout,
                          [&] { return !all_full() || state_.stop_requested.load(); });
}

// Hands polled messages to their lanes. Pausing is not free — librdkafka drops what it
// prefetched and fetches again on resume — so full lanes' partitions are paused only when
// polling goes on for others (this poll also fed a lane with room), or when the lanes
// stayed full through run_once's wait (`lanes_stuck`: slow handlers; the group still
// needs polls). Otherwise the next run_once waits for room before it polls.
// resume_drained() lets paused partitions go on at half.
void Lanes::dispatch(std::vector<Message>& batch, const std::vector<const Message*>& due,
                     bool lanes_stuck) {
    // Per lane, all at once: a lane woken by the first message would take it alone.
    std::set<const Message*> take(due.begin(), due.end());
    std::map<Lane*, std::vector<Message*>> per_lane;
    for (auto& m : batch)
        if (take.count(&m)) per_lane[&lane_of(m.topic_partition())].push_back(&m);
    for (auto& [lane, messages] : per_lane) {
        std::lock_guard lock(lane->mutex);
        for (auto* m : messages) {
            lane->queued_bytes += size_of(*m);
            lane->queue.push_back(std::move(*m));
        }
        lane->wake.notify_all();
    }
    if (per_lane.empty()) return;
    fed_lanes_.clear();
    bool feeds_a_lane_with_room = false;
    for (auto& [lane, messages] : per_lane) {
        fed_lanes_.push_back(lane);
        feeds_a_lane_with_room = feeds_a_lane_with_room || !full(*lane);
    }
    if (!feeds_a_lane_with_room && !lanes_stuck) return;  // run_once waits for room
    std::vector<TopicPartition> pause;
    for (auto& lane : lanes_) {
        if (!full(*lane)) continue;
        std::lock_guard lock(lane->mutex);
        for (const auto& m : lane->queue)
            if (held_back_.insert(m.topic_partition()).second) pause.push_back(m.topic_partition());
    }
    state_.count([&](Counters& c) { c.lane_pauses += static_cast<int64_t>(pause.size()); });
    state_.consumer->pause(pause);
}

void Lanes::resume_drained(const std::map<TopicPartition, int64_t>& waiting) {
    std::vector<TopicPartition> resume;
    for (auto it = held_back_.begin(); it != held_back_.end();) {
        auto& lane = lane_of(*it);
        bool drained;
        {
            std::lock_guard lock(lane.mutex);
            drained = lane.queue.size() <= state_.config.lane_queue_messages / 2 &&
                      lane.queued_bytes <= state_.config.lane_queue_bytes / 2;
        }
        if (drained) {
            if (!waiting.count(*it)) resume.push_back(*it);
            it = held_back_.erase(it);
        } else {
            ++it;
        }
    }
    state_.consumer->resume(resume);
}

}  // namespace postroom::runtime::detail
