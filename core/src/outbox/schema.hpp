#pragma once
// Creating and migrating the outbox's tables: the outbox table (adopting an existing one,
// layout.hpp), its pending-rows index, the relays table, and on PostgreSQL the NOTIFY
// trigger and the one-time move to the gap-safe cursor (cursor.hpp).

#include <string>
#include <vector>

#include "postroom/outbox/outbox.hpp"
#include "postroom/stores/store.hpp"
#include "row_router.hpp"

namespace postroom::outbox::detail {

struct Schema {
    PayloadColumn payload_column = PayloadColumn::bytea;
    std::vector<std::string> added_columns;  // by `migrate` (layout.cpp)
};

// Creates or checks the outbox table and the relays table (and their rows) for
// `config.table`; on PostgreSQL, moves the table to the cursor once. Throws
// ConfigurationError for a table the relay cannot use.
Schema migrate(stores::IdempotencyStore& db, Dialect dialect, const OutboxConfig& config,
               const RowRouter& router);

}  // namespace postroom::outbox::detail
