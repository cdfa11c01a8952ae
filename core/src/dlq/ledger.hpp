#pragma once
// The resolution ledger, "<topic>.ledger": a compacted Kafka topic, or a Redis hash, mapping
// letters to their state ("replayed" or "resolved").
//
// One codec reads and writes its records (pure: no I/O), and read_ledger / write_ledger move
// them. A record settles one letter, under the letter's id as key:
//     {"at":<ms>,"detail":"<where it went, or the operator's note>","state":"resolved"}
// or, on Kafka, a whole acknowledged flight of a replay, under a key of its own
// (ledger_record_key: the first letter's id and the time: unique, so that compaction never
// drops it for a later record covering fewer letters, a replay of some of them again; read in
// order, the later one wins):
//     {"state":"replayed","at":<ms>,"ranges":[["<topic>:<partition>",first,last],...],
//      "to":"<destination>" or ["<destination of run 0>",...],"replay":"<replay id>"}
// Records of earlier versions listed every letter instead, {"ids":[...],"to":...}; they are
// still read. A run no replay writes (reversed, negative, or over 100 million offsets) is
// ignored; a record that is not ours is ignored too.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "postroom/dlq/queue.hpp"

namespace postroom::kafka {
class Admin;
}

namespace postroom::dlq::detail {

struct Clients;

int64_t epoch_ms();

// Consecutive offsets of one partition that went to one destination.
struct LedgerRun {
    std::string partition;  // "<topic>:<partition>"
    int64_t first = 0, last = 0;
    std::string to;  // the destination
    bool operator==(const LedgerRun&) const = default;
};

// One ledger record's value, decoded.
struct LedgerRecord {
    enum class Shape { letter, runs, ids };
    Shape shape = Shape::letter;
    std::string state;  // "replayed" or "resolved"
    int64_t at_ms = 0;
    std::string detail;                                    // letter: where, or the note
    std::vector<LedgerRun> runs;                           // runs
    std::vector<std::pair<std::string, std::string>> ids;  // ids: (letter id, destination)
    std::string replay_id;                                 // runs: the replay that wrote it
};

// The value of a ledger record; letter records are written as earlier versions wrote them.
std::string encode_ledger_record(const LedgerRecord& record);
// A letter's record (its key is the letter's id).
std::string encode_ledger_entry(const LedgerEntry& entry);
// The key of a record of runs: "replayed:<first letter's id>@<at_ms>".
std::string ledger_record_key(std::string_view first_id, int64_t at_ms);
// nullopt when the value is not a ledger record. A record broken part way keeps what came
// before the break (runs or ids), as readers always did.
std::optional<LedgerRecord> decode_ledger_record(std::string_view json);
// Adds what `record` (stored under `key`) settles to `ledger`, letter by letter.
void add_ledger_record(std::map<std::string, LedgerEntry>& ledger, const std::string& key,
                       const LedgerRecord& record);

std::string ledger_name(const QueueConfig& config);
// Creates the compacted ledger topic unless it exists.
void ensure_ledger_topic(kafka::Admin& admin, const std::string& name);
// Every letter the ledger settles, by id.
std::map<std::string, LedgerEntry> read_ledger(Clients& clients);
// Kafka: one record per entry, the topic created first; Redis: HSET.
void write_ledger(Clients& clients,
                  const std::vector<std::pair<std::string, LedgerEntry>>& entries);

}  // namespace postroom::dlq::detail
