#pragma once
// A dead-letter topic (Kafka, embedded) or stream (Redis) as a workspace: scan, list with
// filters and paging, show, group statistics, replay (redrive) with a rate limit, a dry run,
// a loop guard and resumption, and resolution.
//
// The resolution ledger: "<topic>.ledger" (a compacted Kafka topic, or a Redis hash) maps a
// letter id to its state — "replayed" (sent back, acknowledged) or "resolved" (dismissed by
// an operator). Listing hides letters in the ledger unless asked; replay skips letters
// already replayed, which is what makes a killed replay resumable: a letter is recorded only
// after its republished copy was acknowledged, so at most the batches in flight (up to 4,
// plus the one whose ledger entries are being written) are sent twice
// (same event id: idempotent consumers absorb it), and none is lost.
//
// Thread-safety: one thread at a time per DeadLetterQueue.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "postroom/dlq/dead_letters.hpp"

namespace postroom::dlq {

struct QueueConfig {
    std::string broker_url = "embedded://";
    std::string topic;  // the dead-letter topic or stream
    std::chrono::milliseconds timeout{15'000};
};

struct LedgerEntry {
    std::string state;  // "replayed" or "resolved"
    int64_t at_ms = 0;
    std::string detail;  // where it was replayed to, or the operator's note
};

struct ReplayOptions {
    Filter filter;
    std::string to;         // destination; empty: each letter's original topic
    double rate_per_s = 0;  // 0: as fast as the broker takes them
    std::size_t batch_size = 500;
    bool dry_run = false;
    bool again = false;         // also letters already replayed
    int max_replays = 3;        // a letter replayed this often goes to the parking lot
    std::string parking_topic;  // default "<topic>.parking"
    // A replayed record leaves out the failure headers of every convention decoded (see
    // is_failure_header), so the original topic gets no records that claim to have failed;
    // true keeps them. Letters sent to the parking lot always keep them.
    bool keep_failure_headers = false;
    // Called after each acknowledged batch with (letters done, letters in the topic: an upper
    // bound of those selected); returning false cancels (what was acknowledged so far is
    // recorded). Letters stream from the topic into batches: memory holds a few batches.
    std::function<bool(int64_t, int64_t)> progress;
};

// Every replayed record carries its provenance: postroom-replayed-from (the letter's id),
// postroom-replay-id (this replay) and postroom-replay-count; if it fails again, its new dead
// letter keeps them, so the second failure is traced to the first.
struct ReplayReport {
    std::string replay_id;  // "<time in ms>-<random hex>": in each record and ledger entry
    int64_t selected = 0;
    int64_t replayed = 0;
    int64_t parked = 0;          // sent to the parking lot by the loop guard
    int64_t skipped = 0;         // already replayed or resolved
    int64_t without_target = 0;  // no original topic known and no `to`
    // Letters whose value was cut to fit the dead-letter topic: not replayed (their value is
    // a prefix); the whole event is at the letter's original topic, partition and offset.
    int64_t truncated = 0;
    bool cancelled = false;
    std::map<std::string, int64_t> per_target;       // destination -> letters
    std::map<std::string, int64_t> per_fingerprint;  // group -> letters
};

class DeadLetterQueue {
public:
    explicit DeadLetterQueue(QueueConfig config);
    ~DeadLetterQueue();
    DeadLetterQueue(DeadLetterQueue&&) noexcept;
    DeadLetterQueue& operator=(DeadLetterQueue&&) noexcept;

    // Records in the topic (sum over partitions of high - low; XLEN).
    int64_t size();
    // Every letter, oldest first per partition; stops early when `visit` returns false.
    // `progress(read, total)` is called every few thousand letters.
    void scan(const std::function<bool(DeadLetter&&)>& visit,
              const std::function<void(int64_t, int64_t)>& progress = {});

    // Matching letters, newest first (or oldest first), skipping `skip`, at most `limit`.
    // Letters in the ledger are left out unless `include_settled`.
    std::vector<DeadLetter> list(const Filter& filter, std::size_t limit, std::size_t skip = 0,
                                 bool newest_first = true, bool include_settled = false);
    std::optional<DeadLetter> show(const std::string& id);
    Stats stats(const Filter& filter, bool include_settled = false,
                const std::function<void(int64_t, int64_t)>& progress = {});

    ReplayReport replay(const ReplayOptions& options);

    std::map<std::string, LedgerEntry> ledger();
    // Marks letters resolved (they stop showing). Redis: also deletes the entries.
    std::size_t resolve(const std::vector<std::string>& ids, const std::string& note = "");
    // Kafka only, asked explicitly: deletes every record of `partition` below `offset`
    // (DeleteRecords). Returns the new low watermark.
    int64_t truncate(int32_t partition, int64_t before_offset);

    const QueueConfig& config() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace postroom::dlq
