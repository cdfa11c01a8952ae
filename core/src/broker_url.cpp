#include "postroom/broker_url.hpp"

#include <charconv>

#include "detail/redact.hpp"
#include "postroom/error.hpp"
#include "postroom/redact.hpp"

namespace postroom {
namespace {

constexpr std::string_view accepted =
    "expected kafka://host:port[,host:port...], redis://host:port/db or embedded://[name]";

// The URL is shown redacted, and so is any piece of it that `why` quotes (see shown()).
[[noreturn]] void bad_url(std::string_view url, const std::string& why) {
    throw ConfigurationError("broker URL '" + redacted_url(url) + "': " + why + " (" +
                             std::string(accepted) + ")");
}

// A piece of `url` (a view into it) for an error message: quoted, with any password hidden.
std::string shown(std::string_view url, std::string_view piece) {
    return "'" + detail::redacted_part(url, piece) + "'";
}

HostPort parse_host_port(std::string_view url, std::string_view item, uint16_t default_port) {
    HostPort hp;
    std::string_view host = item, port;
    if (!item.empty() && item.front() == '[') {  // [ipv6]:port
        auto close = item.find(']');
        if (close == std::string_view::npos) bad_url(url, "unterminated IPv6 address");
        host = item.substr(1, close - 1);
        auto rest = item.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') bad_url(url, "expected ':port' after the IPv6 address");
            port = rest.substr(1);
        }
    } else if (auto colon = item.rfind(':'); colon != std::string_view::npos) {
        host = item.substr(0, colon);
        port = item.substr(colon + 1);
    }
    if (host.empty()) bad_url(url, "missing host");
    for (char c : host)
        if (static_cast<unsigned char>(c) <= 0x20 || c == '/' || c == '@' || c == '?')
            bad_url(url, "invalid character in host " + shown(url, host));
    hp.host = std::string(host);
    if (port.empty() && item.find(':') != std::string_view::npos && item.front() != '[')
        bad_url(url, "empty port");
    if (port.empty()) {
        hp.port = default_port;
    } else {
        unsigned value = 0;
        auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
        if (ec != std::errc() || p != port.data() + port.size() || value == 0 || value > 65535)
            bad_url(url, "port " + shown(url, port) + " is not a number from 1 to 65535");
        hp.port = static_cast<uint16_t>(value);
    }
    return hp;
}

}  // namespace

std::string BrokerUrl::bootstrap_servers() const {
    std::string out;
    for (const auto& h : hosts) {
        if (!out.empty()) out += ',';
        bool ipv6 = h.host.find(':') != std::string::npos;
        out += ipv6 ? "[" + h.host + "]" : h.host;
        out += ':' + std::to_string(h.port);
    }
    return out;
}

BrokerUrl parse_broker_url(std::string_view url) {
    BrokerUrl out;
    out.text = std::string(url);
    auto sep = url.find("://");
    if (sep == std::string_view::npos) bad_url(url, "missing scheme");
    auto scheme = url.substr(0, sep);
    auto rest = url.substr(sep + 3);
    if (scheme == "embedded") {
        out.scheme = BrokerScheme::embedded;
        while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
        for (char c : rest)
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.'))
                bad_url(url, "embedded broker names use letters, digits, '-', '_' and '.'");
        out.embedded_name = std::string(rest);
        return out;
    }
    if (scheme == "kafka") {
        out.scheme = BrokerScheme::kafka;
        while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
        if (rest.empty()) bad_url(url, "no broker address");
        if (rest.find('@') != std::string_view::npos)
            bad_url(url,
                    "a kafka:// URL takes no user or password; give them as client properties "
                    "(security.protocol, sasl.mechanisms, sasl.username, sasl.password)");
        if (rest.find_first_of("/?#") != std::string_view::npos)
            bad_url(url, "paths and query strings are not accepted in a kafka:// URL");
        std::size_t start = 0;
        while (start <= rest.size()) {
            auto comma = rest.find(',', start);
            auto item = rest.substr(
                start, comma == std::string_view::npos ? rest.size() - start : comma - start);
            if (item.empty()) bad_url(url, "empty broker address in the list");
            out.hosts.push_back(parse_host_port(url, item, 9092));
            if (comma == std::string_view::npos) break;
            start = comma + 1;
        }
        return out;
    }
    if (scheme == "redis") {
        out.scheme = BrokerScheme::redis;
        auto slash = rest.find('/');
        auto authority = rest.substr(0, slash);
        if (auto at = authority.rfind('@'); at != std::string_view::npos)
            authority = authority.substr(at + 1);
        if (authority.empty()) bad_url(url, "no Redis address");
        out.hosts.push_back(parse_host_port(url, authority, 6379));
        if (slash != std::string_view::npos && slash + 1 < rest.size()) {
            auto db = rest.substr(slash + 1);
            int value = 0;
            auto [p, ec] = std::from_chars(db.data(), db.data() + db.size(), value);
            if (ec != std::errc() || p != db.data() + db.size() || value < 0)
                bad_url(url, "Redis database " + shown(url, db) + " is not a number");
            out.redis_db = value;
        }
        return out;
    }
    bad_url(url, "unknown scheme " + shown(url, scheme));
}

}  // namespace postroom
