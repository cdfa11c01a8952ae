#pragma once
// PostgreSQL: the relay's gap-safe cursor over seq.
//
// Every seq up to `sent_through` is settled (published, failed or never committed); the
// relays table keeps it, renewed with the lease in each batch's marking transaction, so a
// row is written only when it is published above a seq still open (then it is marked
// sent, so a restart does not publish it again). Rows stay 'pending' below the cursor.
//
// Gap safety: a seq is taken after its transaction has an id (postroom_outbox_next_seq),
// so a seq missing below a row the read sees belongs to a transaction the read's snapshot
// lists as running, or to none (rolled back, deleted). Such a gap is read again once all
// of those transactions have ended; until then the cursor stays below it.
//
// The decisions (which gaps a read opens or settles, where the cursor may move) are pure
// functions of snapshots and seqs, unit-tested without a database; `Cursor` runs the SQL.

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "postroom/outbox/outbox.hpp"
#include "postroom/stores/store.hpp"
#include "publisher.hpp"
#include "row_router.hpp"

namespace postroom::outbox::detail {

// A PostgreSQL snapshot (pg_current_snapshot): which transactions had ended when it was taken.
struct Snapshot {
    uint64_t xmin = 0, xmax = 0;
    std::vector<uint64_t> running;
    bool ended(uint64_t x) const;
    static Snapshot parse(const std::string& text);  // "xmin:xmax:x1,x2,..."
};

// Seqs missing below a row that was read. Each belongs to a transaction that was running
// when it was read, or to none (rolled back, deleted): a transaction takes its xid before
// its seq. Running were those the read's snapshot lists, and those whose xid is at or
// above the snapshot's xmax (a snapshot does not list them): up to an xid taken after
// the read.
struct Gap {
    int64_t lo, hi;
    std::vector<uint64_t> waits_for;         // listed as running by the read's snapshot
    uint64_t xids_from = 0, xids_below = 0;  // and every xid in [xids_from, xids_below)
    bool ready = false;                      // they have all ended: read the range again
    bool ended(const Snapshot& now) const;
    Gap part(int64_t from, int64_t to, bool is_ready) const;
};

struct CursorState {
    int64_t read_from = 0;  // every seq up to it was read (or is in `gaps`)
    std::vector<Gap> gaps;
};

// Marks ready the gaps whose transactions have all ended by `now`.
void mark_ended(std::vector<Gap>& gaps, const Snapshot& now);

// Moves `at` past a read of `seqs` (ascending: the rows above `at.read_from` and those in its
// gaps; `full`: the read reached its limit, so it covered only up to its last row), taken
// under `snapshot`. The part of each gap the read covered is settled if the gap is ready,
// else it stays open without the seqs found; the rest is read next time. A seq missing
// between rows read above `read_from` opens a gap, unless no transaction could still commit
// it: none running at the read, and no xid taken between its snapshot and
// `xid_after_read()` (called only when a seq is missing; an xid taken after the read).
void advance(CursorState& at, const std::vector<int64_t>& seqs, bool full, const Snapshot& snapshot,
             const std::function<uint64_t()>& xid_after_read);

// Where the cursor may move once a batch is marked: below the first seq still open — a
// gap, a row of the batch (`batch`, in seq order) not in `settled` (sent or failed), the
// first row of a later batch in flight (`later`) — and never back below `sent_through`.
int64_t through_after(const CursorState& at, int64_t sent_through,
                      const std::vector<int64_t>& batch, std::vector<int64_t> settled,
                      const std::vector<int64_t>& later);

// The cursor's SQL, and where it stands. Not thread-safe, but read() touches only `at`:
// a read ahead runs it on another thread, on a copy of `state`.
class Cursor {
public:
    // The arguments must outlive the cursor.
    Cursor(const OutboxConfig& config, const RowRouter& router, const RowReader& reader)
        : config_(config), router_(router), reader_(reader) {}

    bool loaded = false;
    int64_t sent_through = 0;
    CursorState state;  // where reading stands (a read ahead works on a copy)

    // The stored cursor as an SQL expression; the table's name is parameter `param`.
    static std::string stored(int param = 1);

    // Reads the stored cursor; reading starts there.
    void load(stores::Transaction& tx);

    // The next rows after the cursor's read position, in seq order, and the rows of gaps
    // whose transactions have ended. Rows already settled (marked sent or failed above the
    // cursor) are passed over. Moves `at` past what it read.
    std::vector<Pending> read(stores::Transaction& tx, CursorState& at) const;

    // The cursor once the front flight is marked (through_after).
    int64_t after(const std::deque<Flight>& flights) const;

private:
    const OutboxConfig& config_;
    const RowRouter& router_;
    const RowReader& reader_;
};

}  // namespace postroom::outbox::detail
