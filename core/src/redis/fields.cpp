#include "fields.hpp"

#include <charconv>
#include <cstdint>
#include <utility>

namespace postroom::redis {

namespace {

// A header with a null value is written as this prefix + its name, with an empty value.
constexpr std::string_view null_prefix = "\\~";

bool starts_with(std::string_view s, std::string_view p) {
    return s.compare(0, p.size(), p) == 0;
}

std::string escaped_name(const std::string& name) {
    if (name == "key" || name == "data" || starts_with(name, "\\")) return "\\" + name;
    return name;
}

int64_t id_millis(std::string_view id) {
    int64_t ms = -1;
    std::from_chars(id.data(), id.data() + id.size(), ms);
    return ms;
}

}  // namespace

Fields to_fields(const OutgoingMessage& m) {
    Fields f;
    f.reserve(m.headers.size() + 2);
    if (m.key) f.emplace_back("key", *m.key);
    if (m.value) f.emplace_back("data", *m.value);
    for (const auto& h : m.headers) {
        if (h.value)
            f.emplace_back(escaped_name(h.name), *h.value);
        else
            f.emplace_back(std::string(null_prefix) + h.name, std::string());
    }
    return f;
}

Message from_fields(std::string stream, std::string id, const Fields& fields) {
    Message m;
    m.topic = std::move(stream);
    m.partition = 0;
    m.offset = -1;
    m.timestamp_ms = id_millis(id);
    m.id = std::move(id);
    m.headers.reserve(fields.size());
    for (const auto& [name, value] : fields) {
        if (name == detail::nothing_field) continue;
        if (name == "key")
            m.key = value;
        else if (name == "data")
            m.value = value;
        else if (starts_with(name, null_prefix))
            m.headers.push_back({name.substr(null_prefix.size()), std::nullopt});
        else if (starts_with(name, "\\"))
            m.headers.push_back({name.substr(1), value});
        else
            m.headers.push_back({name, value});
    }
    return m;
}

namespace detail {

Fields entry_fields(const OutgoingMessage& message) {
    auto fields = to_fields(message);
    if (fields.empty()) fields.emplace_back(nothing_field, "");
    return fields;
}

}  // namespace detail

}  // namespace postroom::redis
