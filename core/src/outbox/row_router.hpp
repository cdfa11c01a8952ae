#pragma once
// The relay's routing of one row (see postroom/outbox/routing.hpp), resolved once from the
// outbox's configuration.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "postroom/message.hpp"
#include "postroom/outbox/routing.hpp"

namespace postroom::outbox::detail {

// The header that carries the row id, as Debezium's event router names it.
inline constexpr std::string_view id_header = "id";

class RowRouter {
public:
    RowRouter() = default;
    // Validates the template and the column names; throws ConfigurationError. `topic` is the
    // outbox's fixed topic (exclusive with a template).
    RowRouter(const Routing& routing, const std::string& topic);

    // The columns the relay reads besides postroom's own, in order: the route-by column
    // (unless aggregatetype), then the additional fields.
    const std::vector<std::string>& extra_columns() const noexcept { return extras_; }
    // ", \"col\", ..." for a SELECT list (names already checked).
    std::string extra_select() const;

    // A row's topic: its own `topic` column, else the fixed topic, else the template with
    // the route-by value. `extras` holds the values of extra_columns() as text.
    std::string topic(std::optional<std::string> row_topic,
                      std::optional<std::string> aggregate_type,
                      const std::vector<std::optional<std::string>>& extras) const;

    // Adds the `id` header and the additional fields' headers.
    void add_headers(OutgoingMessage& message, const std::string& id,
                     const std::vector<std::optional<std::string>>& extras) const;

private:
    std::string template_;
    std::optional<std::string> fixed_topic_;
    std::optional<std::size_t> route_by_;  // index into extras; none: aggregatetype
    std::vector<std::pair<std::size_t, std::string>> headers_;  // extras index, header name
    std::vector<std::string> extras_;
};

}  // namespace postroom::outbox::detail
