#pragma once
// One replay (redrive) of a dead-letter topic, DeadLetterQueue::replay's work, in three parts:
//   plan:    which letters go (the filter, the ledger, truncated letters, letters without a
//            destination), where (`to` or each letter's original topic; the parking lot for
//            letters the loop guard stops), and whether the destinations exist;
//   flights: letters stream from the scan's reader thread into flights of `batch_size` (up to
//            4 in flight), sent as views with the replay's headers (see outgoing_of);
//   settle:  a flight's acknowledgements are counted and its acknowledged letters recorded in
//            the ledger, which is what makes a killed replay resumable.
//
// Thread-safety: one run() per object, on the calling thread (the scan reads on its own).

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "clients.hpp"
#include "postroom/dlq/queue.hpp"
#include "postroom/message.hpp"
#include "scan.hpp"

namespace postroom::dlq::detail {

class Replay {
public:
    // `settled`: the ledger as read before the replay; `total`: the letters in the topic (0 on
    // a dry run), for progress.
    Replay(Clients& clients, const ReplayOptions& options,
           std::map<std::string, LedgerEntry> settled, int64_t total);
    ReplayReport run();

private:
    struct Planned {
        std::size_t id_at, id_size;  // in the flight's `ids`
        std::size_t target;          // in `targets_`
        int replay_count;
        int32_t partition;  // Kafka: where the letter is
        int64_t offset;
        const MessageView* record;  // until sent
    };
    // Letters sent together, awaiting their acknowledgements.
    struct Flight {
        std::string ids;  // the letters' ids, one after another
        std::vector<Planned> letters;
        std::shared_ptr<BatchDelivery> delivery;  // Kafka
        std::vector<std::string> errors;          // Redis: known at once
        std::string_view id(const Planned& p) const {
            return std::string_view(ids).substr(p.id_at, p.id_size);
        }
    };

    // Plan.
    bool plan(DecodedBatch&& batch);  // false: stop reading
    bool parked(int replay_count) const { return replay_count >= options_.max_replays; }
    std::size_t target_index(std::string_view target);
    bool exists(std::size_t index);
    // Flights.
    std::span<const OutgoingView> outgoing_of(const Flight& f);
    void submit();
    // Settle.
    void settle_front();
    void finish();
    bool going() const {
        return first_error_.empty() && !report_.cancelled && missing_target_.empty();
    }

    Clients& clients_;
    const ReplayOptions& options_;
    const std::string parking_;
    const std::map<std::string, LedgerEntry> settled_;
    const int64_t total_;
    std::size_t step_;  // letters a flight
    ReplayReport report_;

    std::vector<std::string> targets_;        // the destinations met so far
    std::vector<int64_t> per_target_;         // letters, by index in `targets_`
    std::vector<signed char> target_exists_;  // by index: -1 unknown, 0 no, 1 yes
    std::size_t last_target_ = 0;
    std::map<std::array<char, 16>, int64_t> per_fingerprint_;
    std::string id_;  // the letter being planned

    std::future<void> ledger_topic_;
    std::deque<Flight> flight_;
    Flight current_;
    std::vector<DecodedBatch> held_;  // what current_'s letters point into, until they are sent
    std::vector<std::shared_ptr<BatchDelivery>> ledger_writes_;
    std::string missing_target_, first_error_;
    std::chrono::steady_clock::time_point started_;
    int64_t submitted_ = 0, acknowledged_ = 0;

    // Buffers of outgoing_of(), reused from flight to flight.
    std::string texts_;  // the replay counts and parking reasons, one after another
    std::vector<HeaderView> headers_;
    std::vector<OutgoingView> outgoing_;
};

}  // namespace postroom::dlq::detail
