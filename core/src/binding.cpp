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
    m.headers.reserve(4 + event.extensions.size() + 4);
    m.headers.push_back({"ce_specversion", event.specversion});
    m.headers.push_back({"ce_id", event.id});
    m.headers.push_back({"ce_source", event.source});
    m.headers.push_back({"ce_type", event.type});
    if (event.time) m.headers.push_back({"ce_time", *event.time});
    if (event.subject) m.headers.push_back({"ce_subject", *event.subject});
    if (event.dataschema) m.headers.push_back({"ce_dataschema", *event.dataschema});
    if (event.datacontenttype)
        m.headers.push_back({std::string(content_type), *event.datacontenttype});
    for (const auto& [name, value] : event.extensions) m.headers.push_back({"ce_" + name, value});
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
        const std::string& v = *h.value;
        if (attr == "specversion")
            ev.specversion = v;
        else if (attr == "id")
            ev.id = v;
        else if (attr == "source")
            ev.source = v;
        else if (attr == "type")
            ev.type = v;
        else if (attr == "time")
            ev.time = v;
        else if (attr == "subject")
            ev.subject = v;
        else if (attr == "dataschema")
            ev.dataschema = v;
        else if (attr == "datacontenttype")
            ev.datacontenttype = v;
        else
            ev.extensions[attr] = v;
    }
    ev.data = value;
    ev.validate();
    return ev;
}

}  // namespace postroom::cloudevents
