#include "schema.hpp"

#include <cstdint>
#include <cstdio>
#include <optional>
#include <variant>

#include "common.hpp"
#include "layout.hpp"
#include "postroom/error.hpp"

namespace postroom::outbox::detail {

namespace {

// A name of at most 63 bytes for any table name (PostgreSQL would truncate a longer one).
std::string pending_index_name(const std::string& table) {
    uint64_t h = 1469598103934665603ULL;  // FNV-1a
    for (unsigned char ch : table) h = (h ^ ch) * 1099511628211ULL;
    char buf[48];
    std::snprintf(buf, sizeof buf, "postroom_outbox_pending_%016llx",
                  static_cast<unsigned long long>(h));
    return buf;
}

// PostgreSQL: the relay follows a cursor over seq instead of marking each row sent (see
// cursor.hpp). Once per table: seq values are taken only after the writing transaction has
// its transaction id (so a missing seq below a visible one belongs to a transaction the
// snapshot lists as running, or to none), the partial index of pending rows goes (rows stay
// 'pending' below the cursor), and the cursor starts below the first pending row — computed
// under a lock that waits for every transaction writing the table.
void migrate_to_cursor(stores::IdempotencyStore& db, const OutboxConfig& config) {
    const std::string table = quoted(config.table);
    in_transaction(db, [&](stores::Transaction& tx) {
        // Relays tables of earlier versions lack the column.
        if (tx.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = "
                       "current_schema() AND table_name = $1 AND column_name = "
                       "'sent_through'",
                       {std::string(relays_table)})
                .rows.empty())
            tx.execute(std::string("ALTER TABLE ") + relays_table +
                       " ADD COLUMN IF NOT EXISTS sent_through bigint");
    });
    in_transaction(db, [&](stores::Transaction& tx) {
        // Whether the table already follows the cursor (asked again under the lock).
        auto moved = [&](const char* lock) {
            auto r = tx.execute(std::string("SELECT sent_through FROM ") + relays_table +
                                    " WHERE outbox_table = $1" + lock,
                                {config.table});
            return !r.rows.empty() && !std::holds_alternative<std::monostate>(r.rows[0][0]);
        };
        if (moved("")) return;
        tx.execute(
            "CREATE OR REPLACE FUNCTION postroom_outbox_next_seq(seq regclass) RETURNS bigint "
            "LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_current_xact_id(); "
            "RETURN nextval(seq); END $$");
        tx.execute("LOCK TABLE " + table + " IN ACCESS EXCLUSIVE MODE");
        if (moved(" FOR UPDATE")) return;
        auto sequence = tx.execute("SELECT pg_get_serial_sequence($1, 'seq')", {table});
        const auto name = sequence.rows.empty() ? std::nullopt : text_of(sequence.rows[0][0]);
        if (!name)
            throw ConfigurationError("outbox table '" + config.table +
                                     "' has no sequence behind its seq column; it was not "
                                     "created by postroom");
        std::string literal;  // the sequence's name as an SQL string literal
        for (char ch : *name) literal += ch == '\'' ? std::string("''") : std::string(1, ch);
        tx.execute("ALTER TABLE " + table +
                   " ALTER COLUMN seq SET DEFAULT postroom_outbox_next_seq('" + literal +
                   "'::regclass)");
        tx.execute("DROP INDEX IF EXISTS " + quoted(pending_index_name(config.table)));
        tx.execute(std::string("UPDATE ") + relays_table +
                       " SET sent_through = (SELECT COALESCE(MIN(seq) - 1, "
                       "(SELECT COALESCE(MAX(seq), 0) FROM " +
                       table + ")) FROM " + table +
                       " WHERE status = 'pending') WHERE outbox_table = $1",
                   {config.table});
    });
}

}  // namespace

Schema migrate(stores::IdempotencyStore& db, Dialect dialect, const OutboxConfig& config,
               const RowRouter& router) {
    const bool pg = dialect == Dialect::postgres;
    const std::string table = quoted(config.table);
    auto p = [dialect](int n) { return placeholder(dialect, n); };
    Schema schema;
    in_transaction(db, [&](stores::Transaction& tx) {
        // An existing table: checked, and given the relay's columns if it lacks them and
        // `migrate` allows it (layout.cpp).
        const bool existed = inspect_table(tx, dialect, config.table).exists;
        schema.added_columns =
            adopt_table(tx, dialect, config.table, config.database_url, config.migrate);
        // A table new (or new to seq) numbers its rows from 1: a cursor left behind by a
        // table dropped under the same name would pass over them.
        const bool new_seq = !existed || !schema.added_columns.empty();
        tx.execute(
            "CREATE TABLE IF NOT EXISTS " + table + " (" +
            (pg ? "seq bigserial PRIMARY KEY, " : "seq INTEGER PRIMARY KEY AUTOINCREMENT, ") +
            "id text NOT NULL UNIQUE, aggregatetype text NOT NULL, "
            "aggregateid text NOT NULL, type text NOT NULL, payload " +
            (pg ? "bytea" : "BLOB") + ", headers text NOT NULL DEFAULT '{}', topic text, " +
            (pg ? "created_at bigint NOT NULL DEFAULT "
                  "(extract(epoch from clock_timestamp()) * 1000)::bigint, "
                : "created_at INTEGER NOT NULL DEFAULT "
                  "(CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)), ") +
            "status text NOT NULL DEFAULT 'pending', attempts integer NOT NULL "
            "DEFAULT 0, sent_at bigint, error text)");
        // Pending rows in seq order: a partial index, so marking a row sent takes it out
        // of the index instead of adding an entry, and the relay's read touches pending
        // rows only. Earlier versions indexed (status, seq) under "<table>_pending".
        if (!pg || config.table.size() + 8 <= 63)
            tx.execute("DROP INDEX IF EXISTS " + quoted(config.table + "_pending"));
        if (!pg)
            tx.execute("CREATE INDEX IF NOT EXISTS " + quoted(pending_index_name(config.table)) +
                       " ON " + table + " (seq) WHERE status = 'pending'");
        if (pg) {
            // Wakes waiting relays at once (LISTEN on the table's name); they poll too.
            tx.execute(
                "CREATE OR REPLACE FUNCTION postroom_outbox_notify() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify(TG_ARGV[0], ''); "
                "RETURN NULL; END $$");
            // Created once: replacing it would wait for every transaction writing the
            // table (a relay restarted during a long transaction would hang here).
            if (tx.execute("SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND "
                           "tgname = 'postroom_outbox_notify'",
                           {table})
                    .rows.empty())
                tx.execute("CREATE TRIGGER postroom_outbox_notify AFTER INSERT ON " + table +
                           " FOR EACH STATEMENT EXECUTE FUNCTION postroom_outbox_notify('" +
                           config.table + "')");
        }
        tx.execute(std::string("CREATE TABLE IF NOT EXISTS ") + relays_table +
                   " (outbox_table text PRIMARY KEY, owner text NOT NULL DEFAULT '', "
                   "expires_at bigint NOT NULL DEFAULT 0" +
                   (pg ? ", sent_through bigint" : "") + ")");
        if (new_seq)
            tx.execute(std::string("DELETE FROM ") + relays_table + " WHERE outbox_table = " + p(1),
                       {config.table});
        tx.execute(std::string("INSERT INTO ") + relays_table + " (outbox_table) VALUES (" + p(1) +
                       ") ON CONFLICT (outbox_table) DO NOTHING",
                   {config.table});
        const auto layout = inspect_table(tx, dialect, config.table);
        schema.payload_column = payload_column(layout, config.table);
        check_routing_columns(layout, config.table, router.extra_columns());
    });
    if (pg) migrate_to_cursor(db, config);
    return schema;
}

}  // namespace postroom::outbox::detail
