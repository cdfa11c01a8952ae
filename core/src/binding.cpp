#include "postroom/binding.hpp"

#include "detail/excerpt.hpp"
#include "postroom/error.hpp"

namespace postroom::cloudevents {

namespace {

constexpr std::string_view ce_prefix = "ce_";
constexpr std::string_view content_type = "content-type";

bool starts_with_ci(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        char a = s[i], b = prefix[i];
        if (a >= 'A' && a <= 'Z') a = static_cast<char>(a + 32);
        if (a != b) return false;
    }
    return true;
}

std::string ce_header(std::string_view attribute) {
    std::string name(ce_prefix);
    name += attribute;
    return name;
}

bool is_structured(const Headers& headers) {
    auto* ct = find_header(headers, content_type);
    return ct && ct->value && starts_with_ci(*ct->value, "application/cloudevents");
}

}  // namespace

bool is_cloudevent(const Headers& headers) {
    return is_structured(headers) || find_header(headers, "ce_specversion") != nullptr;
}

OutgoingMessage to_message(const Event& event, std::string topic, std::optional<std::string> key,
                           EventMode mode) {
    OutgoingMessage m;
    m.topic = std::move(topic);
    if (auto it = event.extensions.find("partitionkey"); it != event.extensions.end())
        m.key = it->second;
    else
        m.key = std::move(key);
    if (mode == EventMode::structured) {
        m.value = event.to_json();  // validates
        m.headers.push_back(
            {std::string(content_type), std::string(Event::structured_content_type)});
        return m;
    }
    event.validate();
    m.headers.reserve(context_attribute_names.size() + event.extensions.size());
    // ce_ headers for the context attributes, then content-type, then the extensions' ce_
    // headers: the order postroom has always written.
    event.for_each_context_attribute([&m](std::string_view name, const std::string& value) {
        if (name != "datacontenttype") m.headers.push_back({ce_header(name), value});
    });
    if (event.datacontenttype)
        m.headers.push_back({std::string(content_type), *event.datacontenttype});
    for (const auto& [name, value] : event.extensions)
        m.headers.push_back({ce_header(name), value});
    m.value = event.data;
    return m;
}

Event to_event(const Message& message) {
    return to_event(message.key, message.value, message.headers);
}

Event to_event(const std::optional<std::string>& key, const std::optional<std::string>& value,
               const Headers& headers) {
    (void)key;
    if (is_structured(headers)) {
        if (!value) throw CodecError("data", "structured CloudEvent record has no value");
        return Event::from_json(*value);
    }
    if (!find_header(headers, "ce_specversion"))
        throw CodecError("specversion",
                         "record is not a CloudEvent: no ce_specversion header and no "
                         "application/cloudevents content-type");
    Event ev;
    ev.specversion.clear();
    for (const auto& h : headers) {
        if (h.name == content_type) {
            if (h.value) ev.datacontenttype = *h.value;
            continue;
        }
        if (h.name.size() <= ce_prefix.size() || h.name.compare(0, 3, ce_prefix) != 0) continue;
        std::string attr = h.name.substr(3);
        if (!h.value)
            throw CodecError(postroom::detail::excerpt(attr), "CloudEvent attribute '" +
                                                                  postroom::detail::excerpt(attr) +
                                                                  "' has a null header value");
        ev.set_attribute(attr, *h.value);
    }
    ev.data = value;
    ev.validate();
    return ev;
}

}  // namespace postroom::cloudevents
