#pragma once
// Where the outbox relay sends a row and what travels with it.
//
// Two routings share one mechanism, a topic template:
// - postroom's (the default): a row goes to its own `topic` column, else to the outbox's
//   `topic`, else to the value of its route-by column (aggregatetype);
// - Debezium's outbox event router with its defaults (Routing::debezium()): a row goes to
//   its own `topic` column, else to `outbox.event.${routedByValue}`, ${routedByValue} being
//   its aggregatetype (Debezium's route.by.field and route.topic.replacement).
// Either way the key is aggregateid (Debezium's table.field.event.key), the value is the
// payload as stored, the row id travels as the header `id` (Debezium's; consumers dedupe on
// it) besides the CloudEvent's `ce_id`, and the columns of `additional_fields` are copied to
// headers (Debezium's table.fields.additional.placement, header placement).

#include <string>
#include <string_view>
#include <vector>

namespace postroom::outbox {

// A column of the outbox table copied to a header of every message (a NULL adds none).
struct AdditionalField {
    std::string column;
    std::string header;  // the header's name (Debezium's alias); empty: the column's name
    friend bool operator==(const AdditionalField&, const AdditionalField&) = default;
};

struct Routing {
    // Debezium's route.topic.replacement: the topic of a row without a `topic` of its own;
    // ${routedByValue} stands for the row's route_by_field value. Empty: the outbox's
    // `topic`, else ${routedByValue}.
    std::string topic_template;
    std::string route_by_field = "aggregatetype";    // Debezium's route.by.field
    std::vector<AdditionalField> additional_fields;  // table.fields.additional.placement

    // Debezium's defaults: outbox.event.${routedByValue}, routed by aggregatetype.
    static Routing debezium();
};

inline constexpr std::string_view debezium_topic_template = "outbox.event.${routedByValue}";

// The placeholders a topic template may use.
inline constexpr std::string_view routed_by_value_placeholder = "${routedByValue}";

// Throws ConfigurationError naming every unknown or unclosed ${...} placeholder.
void validate_topic_template(std::string_view topic_template);

// The template with each ${routedByValue} replaced by `routed_by_value`.
std::string expand_topic_template(std::string_view topic_template,
                                  std::string_view routed_by_value);

// Debezium's table.fields.additional.placement syntax: "column:header[:alias],...". Only
// the header placement exists here; envelope and partition are refused (ConfigurationError),
// as are column names that are not plain SQL identifiers.
std::vector<AdditionalField> parse_additional_placement(std::string_view spec);

}  // namespace postroom::outbox
