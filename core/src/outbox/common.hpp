#pragma once
// What the outbox's files share: SQL values read as text and numbers, quoting and the
// dialect's placeholders, one-transaction runs, the relays table's name, the wall clock and
// the relay's log line.

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include "../detail/structured_log.hpp"
#include "postroom/outbox/outbox.hpp"
#include "postroom/stores/store.hpp"

namespace postroom::outbox::detail {

using Clock = std::chrono::steady_clock;

inline constexpr const char* relays_table = "postroom_outbox_relays";

// An outbox row keeps an event's id and type in columns of their own and its specversion
// nowhere (it is always 1.0); every other attribute travels in the row's headers column.
inline bool kept_out_of_headers(std::string_view attribute) {
    return attribute == "id" || attribute == "type" || attribute == "specversion";
}

inline int64_t epoch_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

inline std::string quoted(const std::string& name) {
    return "\"" + name + "\"";  // only ever for names that passed is_valid_table_name
}

// "?" for SQLite; "$n" for PostgreSQL.
inline std::string placeholder(Dialect d, int n) {
    return d == Dialect::sqlite ? "?" : "$" + std::to_string(n);
}

inline std::optional<std::string> text_of(const stores::SqlValue& v) {
    if (auto* s = std::get_if<std::string>(&v)) return *s;
    if (auto* b = std::get_if<stores::Blob>(&v)) return b->bytes;
    if (auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
    return std::nullopt;
}

// The text in `v`, moved out of it.
inline std::optional<std::string> take_text(stores::SqlValue& v) {
    if (auto* s = std::get_if<std::string>(&v)) return std::move(*s);
    if (auto* b = std::get_if<stores::Blob>(&v)) return std::move(b->bytes);
    return text_of(v);
}

inline bool is_text(const stores::SqlValue& v, std::string_view text) {
    const auto* s = std::get_if<std::string>(&v);
    return s && *s == text;
}

inline int64_t int_of(const stores::SqlValue& v) {
    if (auto* i = std::get_if<int64_t>(&v)) return *i;
    if (auto* d = std::get_if<double>(&v)) return static_cast<int64_t>(*d);
    if (auto* s = std::get_if<std::string>(&v)) return std::strtoll(s->c_str(), nullptr, 10);
    return 0;
}

// Runs `f(transaction)` in one transaction of `db` and commits.
template <typename F>
auto in_transaction(stores::IdempotencyStore& db, F&& f) {
    auto tx = db.begin();
    if constexpr (std::is_void_v<decltype(f(*tx))>) {
        f(*tx);
        tx->commit();
    } else {
        auto result = f(*tx);
        tx->commit();
        return result;
    }
}

// One line of the relay's structured log, to the configured sink (stderr by default).
inline void log_line(const OutboxConfig& config, const std::string& relay, int level,
                     std::string_view what, const std::string& detail) {
    using postroom::detail::escaped;
    std::string line = std::string("postroom level=") + (level <= 3 ? "error" : "info") +
                       " outbox=\"" + escaped(config.table) + "\" event=\"" + std::string(what) +
                       "\" relay=\"" + relay + "\" detail=\"" + escaped(detail) + "\"";
    (config.log ? config.log : postroom::detail::default_log)(level, line);
}

}  // namespace postroom::outbox::detail
