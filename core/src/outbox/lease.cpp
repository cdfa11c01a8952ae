#include "lease.hpp"

#include <cstdio>
#include <exception>
#include <random>

namespace postroom::outbox::detail {

namespace {

std::string random_owner() {
    std::mt19937_64 rng{std::random_device{}()};
    char buf[32];
    std::snprintf(buf, sizeof buf, "relay-%016llx", static_cast<unsigned long long>(rng()));
    return buf;
}

}  // namespace

Lease::Lease(const OutboxConfig& config, Dialect dialect)
    : config_(config), dialect_(dialect), owner_(random_owner()) {}

bool Lease::hold(stores::Transaction& tx, std::optional<int64_t> through) {
    const int64_t now = epoch_ms();
    until_ = Clock::now() + config_.lease;  // at the latest: set below if we hold it
    const std::string cursor = through && dialect_ == Dialect::postgres
                                   ? ", sent_through = " + std::to_string(*through)
                                   : "";
    auto r = tx.execute(std::string("UPDATE ") + relays_table + " SET owner = " + p(1) +
                            ", expires_at = " + p(2) + cursor + " WHERE outbox_table = " + p(3) +
                            " AND (owner = " + p(4) + " OR expires_at < " + p(5) + ")",
                        {owner_, now + config_.lease.count(), config_.table, owner_, now});
    if (r.changes != 1) until_ = Clock::time_point{};
    return r.changes == 1;
}

void Lease::release(stores::IdempotencyStore& db) noexcept {
    if (!leader_) return;
    leader_ = false;
    try {
        in_transaction(db, [&](stores::Transaction& tx) {
            tx.execute(std::string("UPDATE ") + relays_table +
                           " SET expires_at = 0 WHERE outbox_table = " + p(1) +
                           " AND owner = " + p(2),
                       {config_.table, owner_});
        });
    } catch (const std::exception& e) {
        log(3, "lease-kept",
            std::string("could not hand the lease over: ") + e.what() +
                "; it runs out after the lease time");
    }
}

void Lease::note_leading(bool leading) {
    if (leading == leader_) return;
    leader_ = leading;
    log(4, leading ? "lease-taken" : "standby",
        leading ? "this relay publishes the outbox"
                : "another relay holds the lease; waiting to take over");
}

}  // namespace postroom::outbox::detail
