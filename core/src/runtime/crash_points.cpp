#include "crash_points.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace postroom::runtime::detail {

namespace {

struct Armed {
    std::string name;
    long remaining = 0;  // 0 = disarmed
};

Armed arm() {
    Armed a;
    const char* v = std::getenv("POSTROOM_CRASH_POINT");
    if (!v || !*v) return a;
    std::string spec(v);
    auto colon = spec.find(':');
    a.name = spec.substr(0, colon);
    a.remaining =
        colon == std::string::npos ? 1 : std::strtol(spec.c_str() + colon + 1, nullptr, 10);
    return a;
}

}  // namespace

void crash_point(std::string_view name) noexcept {
    static Armed armed = arm();
    static std::atomic<long> hits{0};
    if (armed.remaining <= 0 || name != armed.name) return;
    if (hits.fetch_add(1) + 1 < armed.remaining) return;
    std::fprintf(stderr, "postroom: crash point '%s' reached, exiting\n", armed.name.c_str());
    std::fflush(stderr);
    std::_Exit(137);
}

}  // namespace postroom::runtime::detail
