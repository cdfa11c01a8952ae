// What every store's Transaction does unless the store does better.
#include <unordered_set>
#include <utility>

#include "postroom/error.hpp"
#include "postroom/stores/store.hpp"

namespace postroom::stores {

std::vector<bool> Transaction::claim_batch(std::string_view scope,
                                           const std::vector<std::string>& keys) {
    std::vector<bool> claimed(keys.size(), false);
    std::unordered_set<std::string_view> seen;
    for (std::size_t i = 0; i < keys.size(); ++i)
        if (seen.insert(keys[i]).second) claimed[i] = claim(scope, keys[i]);
    return claimed;
}

void Transaction::start_claim_batch(std::string_view scope, const std::vector<std::string>& keys) {
    started_scope_ = scope;
    started_keys_ = keys;
}

std::vector<bool> Transaction::finish_claim_batch() {
    auto keys = std::move(started_keys_);
    started_keys_.clear();
    return claim_batch(started_scope_, keys);
}

SqlResult Transaction::execute(std::string_view, const std::vector<SqlValue>&) {
    throw UsageError(
        "this idempotency store has no SQL transaction; use a SQL store (SQLite or "
        "PostgreSQL) to write effects atomically with the dedupe mark");
}

void Transaction::enqueue_command(std::vector<std::string>) {
    throw UsageError(
        "only the Redis store queues Redis commands into its transaction; with this store, "
        "write the effect yourself (SQL stores: execute())");
}

}  // namespace postroom::stores
