#include "cursor.hpp"

#include <algorithm>
#include <optional>

#include "common.hpp"
#include "postroom/error.hpp"

namespace postroom::outbox::detail {

bool Snapshot::ended(uint64_t x) const {
    return x < xmin || (x < xmax && std::find(running.begin(), running.end(), x) == running.end());
}

Snapshot Snapshot::parse(const std::string& text) {
    Snapshot s;
    const auto a = text.find(':'), b = text.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos)
        throw TransportError("unexpected snapshot from PostgreSQL: '" + text + "'", Retriable::no);
    s.xmin = std::stoull(text.substr(0, a));
    s.xmax = std::stoull(text.substr(a + 1, b - a - 1));
    for (std::size_t at = b + 1; at < text.size();) {
        auto end = text.find(',', at);
        if (end == std::string::npos) end = text.size();
        s.running.push_back(std::stoull(text.substr(at, end - at)));
        at = end + 1;
    }
    return s;
}

bool Gap::ended(const Snapshot& now) const {
    if (!std::all_of(waits_for.begin(), waits_for.end(), [&](uint64_t x) { return now.ended(x); }))
        return false;
    for (uint64_t x = std::max(xids_from, now.xmin); x < xids_below; ++x)
        if (!now.ended(x)) return false;
    return true;
}

Gap Gap::part(int64_t from, int64_t to, bool is_ready) const {
    Gap g = *this;
    g.lo = from;
    g.hi = to;
    g.ready = is_ready;
    return g;
}

void mark_ended(std::vector<Gap>& gaps, const Snapshot& now) {
    for (auto& g : gaps) g.ready = g.ready || g.ended(now);
}

void advance(CursorState& at, const std::vector<int64_t>& seqs, bool full, const Snapshot& snapshot,
             const std::function<uint64_t()>& xid_after_read) {
    const int64_t last = seqs.empty() ? at.read_from : seqs.back();
    // The part of each gap the read covered: settled if the gap is ready, else it stays
    // open without the seqs found. The rest is read next time.
    std::vector<int64_t> found;
    for (auto seq : seqs)
        if (seq <= at.read_from) found.push_back(seq);
    std::vector<Gap> open;
    for (auto& g : at.gaps) {
        const int64_t covered = full ? std::min(g.hi, last) : g.hi;
        if (covered >= g.lo && !g.ready) {
            int64_t lo = g.lo;
            for (auto seq : found)
                if (seq >= lo && seq <= covered) {
                    if (seq > lo) open.push_back(g.part(lo, seq - 1, false));
                    lo = seq + 1;
                }
            if (lo <= covered) open.push_back(g.part(lo, covered, false));
        }
        if (covered < g.hi) open.push_back(g.part(std::max(g.lo, covered + 1), g.hi, g.ready));
    }
    at.gaps = std::move(open);
    if (seqs.empty()) return;
    int64_t previous = at.read_from;
    for (auto seq : seqs) {
        if (seq > at.read_from) {
            if (seq > previous + 1) {
                // With no transaction running, a missing seq will never appear.
                const uint64_t below = xid_after_read();
                if (!snapshot.running.empty() || below > snapshot.xmax)
                    at.gaps.push_back(
                        {previous + 1, seq - 1, snapshot.running, snapshot.xmax, below, false});
            }
            previous = seq;
        }
    }
    at.read_from = std::max(at.read_from, previous);
}

int64_t through_after(const CursorState& at, int64_t sent_through,
                      const std::vector<int64_t>& batch, std::vector<int64_t> settled,
                      const std::vector<int64_t>& later) {
    int64_t through = at.read_from;
    for (const auto& g : at.gaps) through = std::min(through, g.lo - 1);
    for (auto seq : later) through = std::min(through, seq - 1);
    std::sort(settled.begin(), settled.end());
    for (auto seq : batch)
        if (!std::binary_search(settled.begin(), settled.end(), seq)) {
            through = std::min(through, seq - 1);
            break;
        }
    return std::max(through, sent_through);
}

std::string Cursor::stored(int param) {
    return std::string("(SELECT COALESCE(MAX(sent_through), 0) FROM ") + relays_table +
           " WHERE outbox_table = $" + std::to_string(param) + ")";
}

void Cursor::load(stores::Transaction& tx) {
    auto r = tx.execute(std::string("SELECT COALESCE(sent_through, 0) FROM ") + relays_table +
                            " WHERE outbox_table = $1",
                        {config_.table});
    sent_through = r.rows.empty() ? 0 : int_of(r.rows[0][0]);
    state = {sent_through, {}};
    loaded = true;
}

std::vector<Pending> Cursor::read(stores::Transaction& tx, CursorState& at) const {
    // Follow the primary key in seq order even while the table's statistics are stale (a
    // backlog just written): sorting the whole backlog for every batch makes each read
    // cost as much as the backlog is long.
    tx.execute("SET LOCAL enable_sort = off");
    if (!at.gaps.empty()) {
        auto r = tx.execute("SELECT pg_current_snapshot()::text");
        mark_ended(at.gaps, Snapshot::parse(text_of(r.rows.at(0).at(0)).value_or("")));
    }
    // An xid newer than every one taken before the read: this transaction's own, taken
    // once a read finds a gap (its commit need not wait for the disk).
    std::optional<uint64_t> own_xid;
    auto xid_after_read = [&] {
        if (!own_xid) {
            auto r = tx.execute(
                "SELECT set_config('synchronous_commit', 'off', true), "
                "pg_current_xact_id()::text");
            own_xid = std::stoull(text_of(r.rows.at(0).at(1)).value_or("0"));
        }
        return *own_xid;
    };
    std::vector<Pending> rows;
    for (;;) {
        // Every gap is read: a row committed in one whose transactions have not all
        // ended is published now, before the rows after it (per-aggregate order).
        int64_t from = at.read_from;
        std::string ranges;
        for (const auto& g : at.gaps) {
            from = std::min(from, g.lo - 1);
            ranges += " OR seq BETWEEN " + std::to_string(g.lo) + " AND " + std::to_string(g.hi);
        }
        const std::size_t limit = config_.batch_size - rows.size();
        auto r = tx.execute(
            "SELECT seq, id, aggregatetype, aggregateid, type, payload, headers, topic, "
            "status, (SELECT pg_current_snapshot()::text)" +
            router_.extra_select() + " FROM " + quoted(config_.table) + " WHERE seq > " +
            std::to_string(from) + " AND (seq > " + std::to_string(at.read_from) + ranges +
            ") ORDER BY seq LIMIT " + std::to_string(limit));
        const bool full = r.rows.size() == limit;
        std::vector<int64_t> seqs;
        seqs.reserve(r.rows.size());
        for (const auto& row : r.rows) seqs.push_back(int_of(row[0]));
        const auto snapshot =
            r.rows.empty() ? Snapshot{} : Snapshot::parse(text_of(r.rows[0][9]).value_or(""));
        advance(at, seqs, full, snapshot, xid_after_read);
        for (auto& row : r.rows)
            if (is_text(row[8], "pending")) rows.push_back(reader_.pending(std::move(row), 10));
        // Another read would need an xid newer than its own snapshot: this transaction's
        // serves only the reads before it was taken.
        if (!full || rows.size() >= config_.batch_size || own_xid) return rows;
    }
}

int64_t Cursor::after(const std::deque<Flight>& flights) const {
    std::vector<int64_t> later;
    for (std::size_t i = 1; i < flights.size(); ++i)
        if (!flights[i].rows.empty()) later.push_back(flights[i].rows.front().seq);
    const auto& f = flights.front();
    std::vector<int64_t> batch;
    batch.reserve(f.rows.size());
    for (const auto& row : f.rows) batch.push_back(row.seq);
    std::vector<int64_t> settled = f.sent;
    for (const auto& failed : f.failed) settled.push_back(failed.first);
    return through_after(state, sent_through, batch, std::move(settled), later);
}

}  // namespace postroom::outbox::detail
