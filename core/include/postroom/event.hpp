#pragma once
// CloudEvents 1.0 value type, its attributes by name and its JSON structured-mode codec.
// This header does no I/O and knows no transport: events become messages through
// postroom/binding.hpp.
//
// Thread-safety: a regular value type; distinct objects may be used from distinct threads.

#include <array>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace postroom {

class Event {
public:
    static constexpr std::string_view spec_version_1_0 = "1.0";
    static constexpr std::string_view structured_content_type =
        "application/cloudevents+json; charset=UTF-8";

    Event() = default;
    Event(std::string id, std::string source, std::string type);

    // Required context attributes.
    std::string id;
    std::string source;  // URI-reference
    std::string specversion{spec_version_1_0};
    std::string type;
    // Optional context attributes.
    std::optional<std::string> time;  // RFC 3339 timestamp
    std::optional<std::string> subject;
    std::optional<std::string> datacontenttype;  // RFC 2046 media type
    std::optional<std::string> dataschema;       // absolute URI
    // Payload, as bytes. Absent and empty are different: absent means "no data".
    std::optional<std::string> data;
    // Extension attributes: lowercase a-z0-9 names, string values.
    std::map<std::string, std::string> extensions;

    // Attributes by name: the one place that maps a CloudEvents attribute name to a member,
    // used by the JSON codec, the message binding and the outbox's rows.
    //
    // Sets the context attribute `name` (one of context_attribute_names below) or, for any
    // other name, the extension `name`. Nothing is checked here: an event is checked whole by
    // validate(), which every codec calls, so the first bad attribute is always named in
    // validate()'s order however the event was put together (a name such as "data" or "Id"
    // lands in extensions and validate() rejects it as an extension name).
    void set_attribute(std::string_view name, std::string value);
    // The attribute `name`: a context attribute's value (required ones even when empty), an
    // extension's value, or nullopt when the event has no such attribute.
    std::optional<std::string> attribute(std::string_view name) const;
    // Calls visit(std::string_view name, const std::string& value) for every context attribute
    // the event has, in the order of context_attribute_names (the order of the JSON format's
    // members), then for every extension in name order.
    template <class Visit>
    void for_each_attribute(Visit&& visit) const;
    // The same, for the context attributes only.
    template <class Visit>
    void for_each_context_attribute(Visit&& visit) const;

    // Throws CodecError naming the first bad attribute.
    void validate() const;

    // True when datacontenttype says the data is JSON (application/json or */*+json),
    // or when it is absent (CloudEvents' JSON format default).
    bool data_is_json() const;

    // JSON structured mode (application/cloudevents+json). JSON data is embedded as a
    // JSON value, text data as a string, anything else as data_base64.
    std::string to_json() const;
    static Event from_json(std::string_view json);

    friend bool operator==(const Event&, const Event&) = default;
};

// The context attributes an Event holds as members, in the fixed order for_each_attribute
// visits them; the first four are required. (data travels beside them, not as an attribute.)
inline constexpr std::array<std::string_view, 8> context_attribute_names = {
    "specversion", "id", "source", "type", "time", "subject", "datacontenttype", "dataschema"};

namespace detail {

// Each context attribute's member: `required` for the string ones, `optional` for the others.
struct EventAttribute {
    std::string_view name;
    std::string Event::*required = nullptr;
    std::optional<std::string> Event::*optional = nullptr;
};

inline constexpr std::array<EventAttribute, context_attribute_names.size()> event_attributes = {{
    {context_attribute_names[0], &Event::specversion, nullptr},
    {context_attribute_names[1], &Event::id, nullptr},
    {context_attribute_names[2], &Event::source, nullptr},
    {context_attribute_names[3], &Event::type, nullptr},
    {context_attribute_names[4], nullptr, &Event::time},
    {context_attribute_names[5], nullptr, &Event::subject},
    {context_attribute_names[6], nullptr, &Event::datacontenttype},
    {context_attribute_names[7], nullptr, &Event::dataschema},
}};

}  // namespace detail

template <class Visit>
void Event::for_each_context_attribute(Visit&& visit) const {
    for (const auto& a : detail::event_attributes) {
        if (a.required)
            visit(a.name, this->*a.required);
        else if (const auto& value = this->*a.optional)
            visit(a.name, *value);
    }
}

template <class Visit>
void Event::for_each_attribute(Visit&& visit) const {
    for_each_context_attribute(visit);
    for (const auto& [name, value] : extensions) visit(std::string_view(name), value);
}

// Names the CloudEvents specification reserves; extensions may not use them.
bool is_context_attribute(std::string_view name) noexcept;
// a-z, 0-9, 1..20 characters (the spec's advice), not a context attribute name.
bool is_valid_extension_name(std::string_view name) noexcept;
// RFC 3339 date-time, e.g. 2026-11-27T08:00:00Z or 2026-11-27T08:00:00.123+01:00.
bool is_rfc3339(std::string_view text) noexcept;
// A UTC RFC 3339 timestamp for now, with millisecond precision.
std::string now_rfc3339();
// A random (version 4) UUID in its 36-character text form: a fresh event id.
std::string new_event_id();

}  // namespace postroom
