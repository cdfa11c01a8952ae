#pragma once
// The structured log lines of the processor and the outbox relay: key="value" pairs, values
// escaped, written to stderr unless the caller gives its own sink.
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>

namespace postroom::detail {

// A value for key="value": quotes and backslashes escaped, newlines as \n.
inline std::string escaped(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

// The default sink: errors, warnings and notices (level <= 4) to stderr, one line at a time.
inline void default_log(int level, const std::string& line) {
    static std::mutex mutex;
    if (level > 4) return;
    std::lock_guard lock(mutex);
    std::fprintf(stderr, "%s\n", line.c_str());
}

}  // namespace postroom::detail
