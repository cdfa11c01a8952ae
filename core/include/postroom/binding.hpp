#pragma once
// The CloudEvents binding of postroom's messages, the same on every transport (it is the
// CloudEvents Kafka protocol binding; Redis Streams carry headers as fields): events to and from
// messages.
// Binary mode: attributes as `ce_<name>` headers, datacontenttype as `content-type`,
// data as the record value. Structured mode: the JSON event as the value with
// content-type `application/cloudevents+json; charset=UTF-8`. The key is the
// `partitionkey` extension when the event has one, else the key the caller gives.

#include <optional>
#include <string>

#include "postroom/event.hpp"
#include "postroom/message.hpp"

namespace postroom::cloudevents {

enum class EventMode { binary, structured };

OutgoingMessage to_message(const Event& event, std::string topic,
                           std::optional<std::string> key = std::nullopt,
                           EventMode mode = EventMode::binary);

// Recognises the mode from the headers. Throws CodecError when the record is not a
// CloudEvent or one of its attributes is invalid.
Event to_event(const Message& message);
Event to_event(const std::optional<std::string>& key, const std::optional<std::string>& value,
               const Headers& headers);

// Whether the headers mark a CloudEvent (either mode).
bool is_cloudevent(const Headers& headers);

}  // namespace postroom::cloudevents
