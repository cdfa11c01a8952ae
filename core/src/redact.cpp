#include "postroom/redact.hpp"

#include "detail/redact.hpp"

#include <algorithm>
#include <cctype>
#include <utility>
#include <vector>

namespace postroom {
namespace {

using Span = std::pair<std::size_t, std::size_t>;  // [begin, end) of a secret in the text

constexpr std::string_view mask = "***";

bool is_key_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
}

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool names_a_secret(std::string_view key) {
    std::string lower(key);
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return lower.find("pass") != std::string::npos || lower.find("secret") != std::string::npos ||
           lower.find("token") != std::string::npos;
}

// The password of the userinfo: after the first ':' that follows "://" (or the start), up to
// the last '@' after that ':'.
void userinfo_secret(std::string_view s, std::vector<Span>& out) {
    auto sep = s.find("://");
    const std::size_t start = sep == std::string_view::npos ? 0 : sep + 3;
    auto colon = s.find(':', start);
    if (colon == std::string_view::npos) return;
    auto at = s.rfind('@');
    if (at == std::string_view::npos || at < colon) return;
    out.emplace_back(colon + 1, at);
}

// Values of query parameters (?k=v&k=v) and conninfo keywords (k=v k='v') naming a secret.
void parameter_secrets(std::string_view s, std::vector<Span>& out) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (!is_key_char(s[i])) continue;
        if (i > 0 && s[i - 1] != '?' && s[i - 1] != '&' && s[i - 1] != ';' && !is_space(s[i - 1]))
            continue;
        std::size_t j = i;
        while (j < s.size() && is_key_char(s[j])) ++j;
        const auto key = s.substr(i, j - i);
        std::size_t k = j;
        while (k < s.size() && is_space(s[k])) ++k;
        if (k >= s.size() || s[k] != '=') {
            i = j - 1;
            continue;
        }
        ++k;
        while (k < s.size() && is_space(s[k])) ++k;
        std::size_t end = k;
        const bool in_query = i > 0 && (s[i - 1] == '?' || s[i - 1] == '&' || s[i - 1] == ';');
        if (!in_query && end < s.size() && s[end] == '\'') {  // conninfo: 'quoted \' value'
            for (++end; end < s.size() && s[end] != '\''; ++end)
                if (s[end] == '\\') ++end;
            end = std::min(end + 1, s.size());
        } else {
            while (end < s.size() && s[end] != '&' && !is_space(s[end])) ++end;
        }
        if (names_a_secret(key)) out.emplace_back(k, end);
        i = end == 0 ? 0 : end - 1;
    }
}

// Every secret of `s`, sorted and merged where they overlap.
std::vector<Span> secrets(std::string_view s) {
    std::vector<Span> spans;
    parameter_secrets(s, spans);
    userinfo_secret(s, spans);
    std::sort(spans.begin(), spans.end());
    std::vector<Span> merged;
    for (const auto& span : spans) {
        if (!merged.empty() && span.first <= merged.back().second)
            merged.back().second = std::max(merged.back().second, span.second);
        else
            merged.push_back(span);
    }
    return merged;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string percent_decoded(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        int hi = 0, lo = 0;
        if (s[i] == '%' && i + 2 < s.size() && (hi = hex_value(s[i + 1])) >= 0 &&
            (lo = hex_value(s[i + 2])) >= 0) {
            out += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

// A conninfo value without its quotes and backslash escapes.
std::string unquoted(std::string_view s) {
    if (s.size() < 2 || s.front() != '\'') return std::string(s);
    std::string out;
    for (std::size_t i = 1; i < s.size() && s[i] != '\''; ++i) {
        if (s[i] == '\\' && i + 1 < s.size()) ++i;
        out += s[i];
    }
    return out;
}

}  // namespace

std::string redacted_url(std::string_view url) {
    std::string out;
    std::size_t kept = 0;
    for (const auto& [begin, end] : secrets(url)) {
        out += url.substr(kept, begin - kept);
        out += mask;
        kept = end;
    }
    out += url.substr(kept);
    return out;
}

std::string redact_secrets(std::string_view text, std::string_view url) {
    // Every occurrence of every form of every secret is marked in the original text, then each
    // marked run becomes one "***" (replacing in place could match inside a mask).
    std::vector<bool> hidden(text.size(), false);
    for (const auto& [begin, end] : secrets(url)) {
        const auto raw = url.substr(begin, end - begin);
        for (const auto& form : {std::string(raw), percent_decoded(raw), unquoted(raw),
                                 percent_decoded(unquoted(raw))}) {
            if (form.empty()) continue;
            for (auto pos = text.find(form); pos != std::string_view::npos;
                 pos = text.find(form, pos + 1))
                std::fill_n(hidden.begin() + static_cast<std::ptrdiff_t>(pos), form.size(), true);
        }
    }
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (!hidden[i])
            out += text[i];
        else if (i == 0 || !hidden[i - 1])
            out += mask;
    }
    return out;
}

namespace detail {

std::string redacted_part(std::string_view url, std::string_view part) {
    const auto* first = part.data();
    if (first < url.data() || first + part.size() > url.data() + url.size())
        return redacted_url(part);  // not a view into url: judge it on its own
    const auto offset = static_cast<std::size_t>(first - url.data());
    const auto last = offset + part.size();
    std::string out;
    std::size_t kept = offset;
    for (const auto& [begin, end] : secrets(url)) {
        if (begin == end || end <= offset || begin >= last) continue;
        const auto from = std::max(begin, offset), to = std::min(end, last);
        out += url.substr(kept, from - kept);
        out += mask;
        kept = to;
    }
    out += url.substr(kept, last - kept);
    return out;
}

}  // namespace detail
}  // namespace postroom
