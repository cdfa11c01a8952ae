#pragma once
// CloudEvents 1.0 value type and its JSON structured-mode codec.
// This header does no I/O and knows no transport: events become messages through
// postroom/binding.hpp.
//
// Thread-safety: a regular value type; distinct objects may be used from distinct threads.

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
