// Inspecting and adopting an existing outbox table (see layout.hpp).
#include "layout.hpp"

#include <algorithm>

#include "postroom/error.hpp"
#include "postroom/redact.hpp"

namespace postroom::outbox::detail {

using stores::SqlValue;

namespace {

std::string quoted(const std::string& name) {
    return "\"" + name + "\"";  // only ever for names that passed is_valid_table_name
}

std::string listed(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
}

std::string text(const SqlValue& v) {
    if (const auto* s = std::get_if<std::string>(&v)) return *s;
    if (const auto* b = std::get_if<stores::Blob>(&v)) return b->bytes;
    return {};
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

// What each relay column is, when added to an existing PostgreSQL table.
std::string relay_column_definition(const std::string& column) {
    if (column == "seq") return "seq bigserial";
    if (column == "headers") return "headers text NOT NULL DEFAULT '{}'";
    if (column == "topic") return "topic text";
    if (column == "created_at")
        return "created_at bigint NOT NULL DEFAULT "
               "(extract(epoch from clock_timestamp()) * 1000)::bigint";
    if (column == "status") return "status text NOT NULL DEFAULT 'pending'";
    if (column == "attempts") return "attempts integer NOT NULL DEFAULT 0";
    if (column == "sent_at") return "sent_at bigint";
    return "error text";
}

std::vector<std::string> add_relay_columns(stores::Transaction& tx, const std::string& table) {
    // Waits for every transaction writing the table: its rows are all committed (or gone)
    // when they get their seq, and none is written meanwhile.
    tx.execute("LOCK TABLE " + quoted(table) + " IN ACCESS EXCLUSIVE MODE");
    const auto missing = inspect_table(tx, Dialect::postgres, table).missing(relay_columns());
    if (missing.empty()) return missing;  // another process adopted it first
    std::string alter;
    for (const auto& c : missing)
        alter += (alter.empty() ? " ADD COLUMN " : ", ADD COLUMN ") + relay_column_definition(c);
    // One rewrite of the table; a bigserial column numbers the rows in their physical order.
    tx.execute("ALTER TABLE " + quoted(table) + alter);
    if (std::find(missing.begin(), missing.end(), "seq") != missing.end()) {
        // The relay reads in seq order through an index on seq: the primary key, unless the
        // table has one (Debezium's tables usually key on id).
        const bool keyed = !tx.execute(
                                  "SELECT 1 FROM pg_index WHERE indrelid = to_regclass($1) "
                                  "AND indisprimary",
                                  {quoted(table)})
                                .rows.empty();
        tx.execute("ALTER TABLE " + quoted(table) +
                   (keyed ? " ADD UNIQUE (seq)" : " ADD PRIMARY KEY (seq)"));
    }
    return missing;
}

}  // namespace

std::optional<std::string> TableLayout::type_of(std::string_view column) const {
    for (const auto& [name, type] : columns)
        if (name == column) return type;
    return std::nullopt;
}

std::vector<std::string> TableLayout::missing(const std::vector<std::string>& wanted) const {
    std::vector<std::string> out;
    for (const auto& w : wanted)
        if (!type_of(w)) out.push_back(w);
    return out;
}

const std::vector<std::string>& event_columns() {
    static const std::vector<std::string> columns{"id", "aggregatetype", "aggregateid", "type",
                                                  "payload"};
    return columns;
}

const std::vector<std::string>& relay_columns() {
    static const std::vector<std::string> columns{"seq",    "headers",  "topic",   "created_at",
                                                  "status", "attempts", "sent_at", "error"};
    return columns;
}

TableLayout inspect_table(stores::Transaction& tx, Dialect dialect, const std::string& table) {
    auto r = dialect == Dialect::postgres
                 ? tx.execute(
                       "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
                       "WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT "
                       "attisdropped ORDER BY attnum",
                       {quoted(table)})
                 : tx.execute("SELECT name, type FROM pragma_table_info(?)", {table});
    TableLayout layout;
    layout.exists = !r.rows.empty();
    for (const auto& row : r.rows) layout.columns.emplace_back(text(row[0]), lower(text(row[1])));
    return layout;
}

std::vector<std::string> adopt_table(stores::Transaction& tx, Dialect dialect,
                                     const std::string& table, const std::string& database_url,
                                     bool migrate) {
    const auto layout = inspect_table(tx, dialect, table);
    if (!layout.exists) return {};
    if (const auto lacking = layout.missing(event_columns()); !lacking.empty())
        throw ConfigurationError("table \"" + table +
                                 "\" is not an outbox table: it has no column " + listed(lacking) +
                                 " (an outbox row has " + listed(event_columns()) +
                                 ", as Debezium's outbox table does)");
    payload_column(layout, table);
    const auto lacking = layout.missing(relay_columns());
    if (lacking.empty()) return {};
    const std::string what = "outbox table \"" + table + "\" has the event columns (" +
                             listed(event_columns()) +
                             ", Debezium's layout) but not the relay's: " + listed(lacking);
    if (dialect == Dialect::sqlite)
        throw ConfigurationError(
            what +
            ". Adding them in place is supported on PostgreSQL; on SQLite let postroom create a "
            "new outbox table and copy the rows into it (INSERT INTO new (id, aggregatetype, "
            "aggregateid, type, payload) SELECT ... ORDER BY rowid)");
    if (!migrate)
        throw ConfigurationError(
            what + ". Add them once, with: postroom outbox migrate --db " +
            redacted_url(database_url) + " --table " + table +
            " (from Python: postroom.Outbox(..., migrate=True)); its rows are then published "
            "once each, in the order they were written");
    return add_relay_columns(tx, table);
}

PayloadColumn payload_column(const TableLayout& layout, const std::string& table) {
    const auto type = layout.type_of("payload").value_or("bytea");
    if (type == "bytea" || type == "blob" || type.empty()) return PayloadColumn::bytea;
    if (type == "jsonb") return PayloadColumn::jsonb;
    if (type == "json") return PayloadColumn::json;
    if (type == "text" || type.rfind("character", 0) == 0 || type.rfind("varchar", 0) == 0 ||
        type.rfind("clob", 0) == 0)
        return PayloadColumn::text;
    throw ConfigurationError("the payload column of outbox table \"" + table + "\" is " + type +
                             "; the relay publishes bytea, jsonb, json or text payloads");
}

void check_routing_columns(const TableLayout& layout, const std::string& table,
                           const std::vector<std::string>& columns) {
    if (const auto lacking = layout.missing(columns); !lacking.empty())
        throw ConfigurationError("the outbox routing reads column " + listed(lacking) +
                                 ", which table \"" + table + "\" does not have");
}

}  // namespace postroom::outbox::detail
