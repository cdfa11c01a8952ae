// The outbox's routing: topic templates, Debezium's additional-placement syntax, and the
// per-row decisions of the relay (topic, extra headers).
#include "postroom/outbox/routing.hpp"

#include <algorithm>

#include "postroom/error.hpp"
#include "postroom/stores/store.hpp"
#include "row_router.hpp"

namespace postroom::outbox {

namespace {

std::string_view trimmed(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

std::vector<std::string_view> split(std::string_view s, char by) {
    std::vector<std::string_view> parts;
    for (std::size_t at = 0;;) {
        const auto end = s.find(by, at);
        parts.push_back(s.substr(at, end == std::string_view::npos ? end : end - at));
        if (end == std::string_view::npos) return parts;
        at = end + 1;
    }
}

}  // namespace

Routing Routing::debezium() {
    Routing r;
    r.topic_template = std::string(debezium_topic_template);
    return r;
}

void validate_topic_template(std::string_view topic_template) {
    std::vector<std::string> unknown;
    for (std::size_t at = topic_template.find("${"); at != std::string_view::npos;) {
        const auto end = topic_template.find('}', at);
        if (end == std::string_view::npos) {
            unknown.push_back(std::string(topic_template.substr(at)) + " (unclosed)");
            break;
        }
        const auto placeholder = topic_template.substr(at, end - at + 1);
        if (placeholder != routed_by_value_placeholder) unknown.emplace_back(placeholder);
        at = topic_template.find("${", end + 1);
    }
    if (!unknown.empty()) {
        std::string names;
        for (const auto& u : unknown) names += (names.empty() ? "" : ", ") + u;
        throw ConfigurationError("outbox topic template '" + std::string(topic_template) +
                                 "' has unknown placeholder" + (unknown.size() > 1 ? "s " : " ") +
                                 names + "; the one placeholder is " +
                                 std::string(routed_by_value_placeholder) +
                                 " (the route-by column's value, Debezium's route.by.field)");
    }
}

std::string expand_topic_template(std::string_view topic_template,
                                  std::string_view routed_by_value) {
    std::string out;
    out.reserve(topic_template.size() + routed_by_value.size());
    for (std::size_t at = 0;;) {
        const auto next = topic_template.find(routed_by_value_placeholder, at);
        out += topic_template.substr(at, next == std::string_view::npos ? next : next - at);
        if (next == std::string_view::npos) return out;
        out += routed_by_value;
        at = next + routed_by_value_placeholder.size();
    }
}

std::vector<AdditionalField> parse_additional_placement(std::string_view spec) {
    std::vector<AdditionalField> fields;
    if (trimmed(spec).empty()) return fields;
    for (auto item : split(spec, ',')) {
        const auto parts = split(trimmed(item), ':');
        const auto bad = [&](const std::string& why) {
            return ConfigurationError("outbox additional placement '" + std::string(item) + "': " +
                                      why + " (expected column:header or column:header:alias)");
        };
        if (parts.size() < 2 || parts.size() > 3) throw bad("not column:placement[:alias]");
        const std::string column(trimmed(parts[0]));
        const std::string placement(trimmed(parts[1]));
        if (!stores::is_valid_table_name(column))
            throw bad("'" + column + "' is not a column name");
        if (placement == "envelope" || placement == "partition")
            throw bad(
                "the " + placement +
                " placement is Debezium's only; postroom places additional fields in headers");
        if (placement != "header") throw bad("unknown placement '" + placement + "'");
        AdditionalField f{column, parts.size() == 3 ? std::string(trimmed(parts[2])) : column};
        if (f.header.empty()) throw bad("empty alias");
        fields.push_back(std::move(f));
    }
    return fields;
}

namespace detail {

RowRouter::RowRouter(const Routing& routing, const std::string& topic) {
    if (!routing.topic_template.empty() && !topic.empty())
        throw ConfigurationError(
            "outbox topic '" + topic + "' and topic template '" + routing.topic_template +
            "' are both set: give one (a template without placeholders is a fixed topic)");
    if (!routing.topic_template.empty()) {
        validate_topic_template(routing.topic_template);
        template_ = routing.topic_template;
    } else if (!topic.empty()) {
        fixed_topic_ = topic;
    } else {
        template_ = std::string(routed_by_value_placeholder);
    }
    if (!stores::is_valid_table_name(routing.route_by_field))
        throw ConfigurationError("outbox route-by field '" + routing.route_by_field +
                                 "' is not a column name");
    if (routing.route_by_field != "aggregatetype") {
        route_by_ = extras_.size();
        extras_.push_back(routing.route_by_field);
    }
    for (const auto& f : routing.additional_fields) {
        if (!stores::is_valid_table_name(f.column))
            throw ConfigurationError("outbox additional field '" + f.column +
                                     "' is not a column name");
        headers_.emplace_back(extras_.size(), f.header.empty() ? f.column : f.header);
        extras_.push_back(f.column);
    }
}

std::string RowRouter::extra_select() const {
    std::string out;
    for (const auto& c : extras_) out += ", \"" + c + "\"";
    return out;
}

std::string RowRouter::topic(std::optional<std::string> row_topic,
                             std::optional<std::string> aggregate_type,
                             const std::vector<std::optional<std::string>>& extras) const {
    if (row_topic) return std::move(*row_topic);
    if (fixed_topic_) return *fixed_topic_;
    const auto& routed = route_by_ ? extras.at(*route_by_) : aggregate_type;
    return expand_topic_template(template_, routed.value_or(""));
}

void RowRouter::add_headers(OutgoingMessage& message, const std::string& id,
                            const std::vector<std::optional<std::string>>& extras) const {
    message.headers.push_back({std::string(id_header), id});
    for (const auto& [index, header] : headers_)
        if (const auto& value = extras.at(index)) message.headers.push_back({header, *value});
}

}  // namespace detail

}  // namespace postroom::outbox
