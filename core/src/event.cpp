#include "postroom/event.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>

#include <nlohmann/json.hpp>

#include "base64.hpp"
#include "detail/excerpt.hpp"
#include "postroom/error.hpp"

namespace postroom {
namespace {

// Besides the context attributes, the names the JSON format gives the data.
constexpr std::array<std::string_view, 2> data_members = {"data", "data_base64"};

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!is_digit(c)) return false;
    return true;
}

int number(std::string_view s) {
    int v = 0;
    for (char c : s) v = v * 10 + (c - '0');
    return v;
}

bool has_control_or_space(std::string_view s) {
    for (unsigned char c : s)
        if (c <= 0x20 || c == 0x7f) return true;
    return false;
}

// scheme ":" ... with scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
bool has_uri_scheme(std::string_view s) {
    auto colon = s.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    if (!alpha(s[0])) return false;
    for (std::size_t i = 1; i < colon; ++i) {
        char c = s[i];
        if (!(alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.')) return false;
    }
    return true;
}

bool is_token_char(char c) {
    static constexpr std::string_view specials = "()<>@,;:\\\"/[]?= \t";
    return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f &&
           specials.find(c) == std::string_view::npos;
}

// type "/" subtype *( ";" parameter ), RFC 2046 / RFC 7231 media type.
bool is_media_type(std::string_view s) {
    auto semi = s.find(';');
    auto essence = s.substr(0, semi);
    while (!essence.empty() && essence.back() == ' ') essence.remove_suffix(1);
    auto slash = essence.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash + 1 == essence.size()) return false;
    for (std::size_t i = 0; i < essence.size(); ++i)
        if (i != slash && !is_token_char(essence[i])) return false;
    return true;
}

std::string lower_essence(std::string_view content_type) {
    auto essence = content_type.substr(0, content_type.find(';'));
    std::string out;
    for (char c : essence)
        if (c != ' ') out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
    return out;
}

bool is_text_content_type(std::string_view content_type) {
    auto e = lower_essence(content_type);
    return e.rfind("text/", 0) == 0 || e == "application/xml" ||
           (e.size() > 4 && e.compare(e.size() - 4, 4, "+xml") == 0);
}

[[noreturn]] void bad(std::string_view attribute, const std::string& why) {
    auto name = detail::excerpt(attribute);
    throw CodecError(name, "CloudEvent attribute '" + name + "' " + why);
}

void require_nonempty(std::string_view attribute, const std::string& value) {
    if (value.empty()) bad(attribute, "is required and must be a non-empty string");
}

std::string attribute_string(const nlohmann::ordered_json& j, std::string_view attribute) {
    if (j.is_string()) return j.get<std::string>();
    if (j.is_boolean()) return j.get<bool>() ? "true" : "false";
    if (j.is_number_integer() || j.is_number_unsigned()) return j.dump();
    bad(attribute,
        "must be a string, boolean or integer in JSON, got " + std::string(j.type_name()));
}

}  // namespace

Event::Event(std::string id_, std::string source_, std::string type_)
    : id(std::move(id_)), source(std::move(source_)), type(std::move(type_)) {}

bool is_context_attribute(std::string_view name) noexcept {
    for (auto a : context_attribute_names)
        if (a == name) return true;
    for (auto a : data_members)
        if (a == name) return true;
    return false;
}

bool is_valid_extension_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > 20 || is_context_attribute(name)) return false;
    for (char c : name)
        if (!((c >= 'a' && c <= 'z') || is_digit(c))) return false;
    return true;
}

bool is_rfc3339(std::string_view t) noexcept {
    // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
    if (t.size() < 20) return false;
    if (!all_digits(t.substr(0, 4)) || t[4] != '-' || !all_digits(t.substr(5, 2)) || t[7] != '-' ||
        !all_digits(t.substr(8, 2)) || (t[10] != 'T' && t[10] != 't') ||
        !all_digits(t.substr(11, 2)) || t[13] != ':' || !all_digits(t.substr(14, 2)) ||
        t[16] != ':' || !all_digits(t.substr(17, 2)))
        return false;
    int month = number(t.substr(5, 2)), day = number(t.substr(8, 2));
    int hour = number(t.substr(11, 2)), minute = number(t.substr(14, 2));
    int second = number(t.substr(17, 2));
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
        return false;
    std::size_t i = 19;
    if (i < t.size() && t[i] == '.') {
        std::size_t start = ++i;
        while (i < t.size() && is_digit(t[i])) ++i;
        if (i == start) return false;
    }
    if (i >= t.size()) return false;
    if ((t[i] == 'Z' || t[i] == 'z') && i + 1 == t.size()) return true;
    if ((t[i] == '+' || t[i] == '-') && t.size() - i == 6 && all_digits(t.substr(i + 1, 2)) &&
        t[i + 3] == ':' && all_digits(t.substr(i + 4, 2)))
        return number(t.substr(i + 1, 2)) <= 23 && number(t.substr(i + 4, 2)) <= 59;
    return false;
}

std::string new_event_id() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    uint64_t hi = rng(), lo = rng();
    hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
    lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // RFC 4122 variant
    char buf[37];
    std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                  static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                  static_cast<unsigned>(lo >> 48),
                  static_cast<unsigned long long>(lo & 0xffffffffffffULL));
    return buf;
}

std::string now_rfc3339() {
    using namespace std::chrono;
    auto now = system_clock::now();
    auto secs = system_clock::to_time_t(now);
    auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms));
    return buf;
}

void Event::set_attribute(std::string_view name, std::string value) {
    for (const auto& attribute : detail::event_attributes) {
        if (attribute.name != name) continue;
        if (attribute.required)
            this->*attribute.required = std::move(value);
        else
            this->*attribute.optional = std::move(value);
        return;
    }
    extensions.insert_or_assign(std::string(name), std::move(value));
}

std::optional<std::string> Event::attribute(std::string_view name) const {
    for (const auto& attribute : detail::event_attributes) {
        if (attribute.name != name) continue;
        if (attribute.required) return this->*attribute.required;
        return this->*attribute.optional;
    }
    if (auto it = extensions.find(std::string(name)); it != extensions.end()) return it->second;
    return std::nullopt;
}

void Event::validate() const {
    require_nonempty("id", id);
    require_nonempty("source", source);
    if (has_control_or_space(source)) bad("source", "must be a URI-reference without spaces");
    if (specversion != spec_version_1_0)
        bad("specversion", "must be \"1.0\", got \"" + detail::excerpt(specversion) + "\"");
    require_nonempty("type", type);
    if (time && !is_rfc3339(*time))
        bad("time", "must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z, got \"" +
                        detail::excerpt(*time) + "\"");
    if (subject && subject->empty()) bad("subject", "must be non-empty when present");
    if (datacontenttype && !is_media_type(*datacontenttype))
        bad("datacontenttype", "must be a media type such as application/json, got \"" +
                                   detail::excerpt(*datacontenttype) + "\"");
    if (dataschema && (!has_uri_scheme(*dataschema) || has_control_or_space(*dataschema)))
        bad("dataschema", "must be an absolute URI, got \"" + detail::excerpt(*dataschema) + "\"");
    for (const auto& [name, value] : extensions) {
        if (!is_valid_extension_name(name))
            throw CodecError(detail::excerpt(name),
                             "CloudEvent extension attribute name '" + detail::excerpt(name) +
                                 "' is invalid: use 1 to 20 lowercase letters or digits, "
                                 "not a reserved attribute name");
    }
}

bool Event::data_is_json() const {
    if (!datacontenttype) return true;
    auto e = lower_essence(*datacontenttype);
    return e == "application/json" || e == "text/json" ||
           (e.size() > 5 && e.compare(e.size() - 5, 5, "+json") == 0);
}

std::string Event::to_json() const {
    validate();
    nlohmann::ordered_json j;
    for_each_attribute(
        [&j](std::string_view name, const std::string& value) { j[std::string(name)] = value; });
    if (data) {
        if (data_is_json()) {
            try {
                j["data"] = nlohmann::ordered_json::parse(*data);
            } catch (const nlohmann::json::parse_error& e) {
                bad("data",
                    std::string("is declared JSON by datacontenttype but does not parse: ") +
                        e.what());
            }
        } else if (datacontenttype && is_text_content_type(*datacontenttype)) {
            j["data"] = *data;
        } else {
            j["data_base64"] = detail::base64_encode(*data);
        }
    }
    try {
        return j.dump();
    } catch (const nlohmann::json::type_error&) {
        bad("data",
            "is text but not valid UTF-8; send it as binary (e.g. "
            "datacontenttype application/octet-stream)");
    }
}

Event Event::from_json(std::string_view text) {
    nlohmann::ordered_json j;  // keeps the order of members inside JSON data
    try {
        j = nlohmann::ordered_json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
        throw CodecError("", std::string("structured CloudEvent is not valid JSON: ") +
                                 detail::excerpt(e.what(), 200));
    }
    if (!j.is_object()) throw CodecError("", "structured CloudEvent must be a JSON object");
    Event ev;
    // Context attributes are JSON strings; a required one must be there, an optional one may
    // also be null (absent).
    for (const auto& attribute : detail::event_attributes) {
        const auto it = j.find(std::string(attribute.name));
        const bool required = attribute.required != nullptr;
        if (it == j.end() && required) bad(attribute.name, "is required but missing");
        if (it == j.end() || (it->is_null() && !required)) continue;
        if (!it->is_string()) bad(attribute.name, "must be a string");
        ev.set_attribute(attribute.name, it->get<std::string>());
    }
    auto data = j.find("data");
    auto data_base64 = j.find("data_base64");
    if (data != j.end() && data_base64 != j.end())
        bad("data", "and data_base64 are both present; only one is allowed");
    if (data_base64 != j.end() && !data_base64->is_null()) {
        if (!data_base64->is_string()) bad("data_base64", "must be a base64 string");
        auto decoded = detail::base64_decode(data_base64->get<std::string>());
        if (!decoded) bad("data_base64", "is not valid base64");
        ev.data = std::move(*decoded);
    } else if (data != j.end()) {
        if (data->is_string() && !ev.data_is_json())
            ev.data = data->get<std::string>();
        else
            ev.data = data->dump();
    }
    for (auto it = j.begin(); it != j.end(); ++it) {
        if (is_context_attribute(it.key())) continue;
        if (it->is_null()) continue;
        ev.set_attribute(it.key(), attribute_string(*it, it.key()));
    }
    ev.validate();
    return ev;
}

}  // namespace postroom
