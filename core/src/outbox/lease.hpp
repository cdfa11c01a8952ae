#pragma once
// The relay lease: one row per outbox table in postroom_outbox_relays names the relay that
// publishes it (`owner`) until `expires_at`. A relay takes it when it has run out, renews it
// in each batch's marking transaction (with the cursor, on PostgreSQL) and hands it over on
// a clean shutdown.

#include <cstdint>
#include <optional>
#include <string>

#include "common.hpp"
#include "postroom/outbox/outbox.hpp"
#include "postroom/stores/store.hpp"

namespace postroom::outbox::detail {

// Not thread-safe: the relay uses it from one thread at a time.
class Lease {
public:
    // `config` must outlive the lease.
    Lease(const OutboxConfig& config, Dialect dialect);

    // This relay's name in the relays table and the log.
    const std::string& owner() const noexcept { return owner_; }
    bool leader() const noexcept { return leader_; }
    // Whether the lease must be taken afresh: this relay does not lead, or the lease may
    // have run out.
    bool fresh() const { return !leader_ || Clock::now() >= until_; }
    // Whether the lease must be renewed before the next batch: it is renewed in each batch's
    // marking transaction, so a busy relay reads its batches without writing (one commit,
    // one fsync per batch).
    bool needs_renewal() const { return Clock::now() + config_.lease / 2 > until_; }

    // Takes or renews the lease in `tx`; false when another relay holds it. With `through`
    // (PostgreSQL), also stores the cursor.
    bool hold(stores::Transaction& tx, std::optional<int64_t> through = std::nullopt);

    // A clean shutdown hands the lease over at once: a standby need not wait for it to run
    // out. Trouble here (the database gone) only leaves it to run out.
    void release(stores::IdempotencyStore& db) noexcept;

    // Records (and logs, when it changes) whether this relay leads.
    void note_leading(bool leading);
    // Another relay took over: this one no longer leads.
    void lost() noexcept { leader_ = false; }

private:
    void log(int level, std::string_view what, const std::string& detail) const {
        log_line(config_, owner_, level, what, detail);
    }
    std::string p(int n) const { return placeholder(dialect_, n); }

    const OutboxConfig& config_;
    Dialect dialect_;
    std::string owner_;
    bool leader_ = false;
    // Until when this relay surely holds the lease (its own clock; renewed with every mark).
    Clock::time_point until_{};
};

}  // namespace postroom::outbox::detail
