#pragma once
// The outbox table's layout: what an existing table has, whether the relay can use it, and
// adopting a table laid out as Debezium's documentation shows (the event columns only) by
// adding the columns the relay needs.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "postroom/outbox/outbox.hpp"
#include "postroom/stores/store.hpp"

namespace postroom::outbox::detail {

struct TableLayout {
    bool exists = false;
    std::vector<std::pair<std::string, std::string>> columns;  // name, type (lower case)

    std::optional<std::string> type_of(std::string_view column) const;
    std::vector<std::string> missing(const std::vector<std::string>& wanted) const;
};

// The columns a writer fills (Debezium's outbox table), and those only the relay needs.
const std::vector<std::string>& event_columns();
const std::vector<std::string>& relay_columns();

// The table's columns, as the statements of `tx` see it (the search path's table).
TableLayout inspect_table(stores::Transaction& tx, Dialect dialect, const std::string& table);

// Prepares an existing table before the outbox's own CREATE TABLE IF NOT EXISTS: refuses a
// table without the event columns or with a payload the relay cannot read; a table without
// the relay's columns is refused with the command that adds them, or — with `migrate` and on
// PostgreSQL — gets them here, under a lock that waits for every transaction writing it
// (existing rows become pending, in their physical order). Returns the columns added.
std::vector<std::string> adopt_table(stores::Transaction& tx, Dialect dialect,
                                     const std::string& table, const std::string& database_url,
                                     bool migrate);

// The payload column's kind, from its type: bytea (or SQLite), text, json, jsonb. Throws
// ConfigurationError for a type the relay cannot publish byte for byte.
PayloadColumn payload_column(const TableLayout& layout, const std::string& table);

// Throws ConfigurationError naming the routing's columns the table lacks.
void check_routing_columns(const TableLayout& layout, const std::string& table,
                           const std::vector<std::string>& columns);

}  // namespace postroom::outbox::detail
