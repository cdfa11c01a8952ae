#include "replies.hpp"

#include "postroom/error.hpp"

namespace postroom::redis::detail {

Fields fields_of(const redisReply* r) {
    Fields f;
    if (!r || r->type != REDIS_REPLY_ARRAY) return f;
    f.reserve(r->elements / 2);
    for (std::size_t i = 0; i + 1 < r->elements; i += 2)
        f.emplace_back(text(r->element[i]), text(r->element[i + 1]));
    return f;
}

int64_t integer_field(const redisReply* map, std::string_view name, int64_t fallback) {
    for (std::size_t i = 0; i + 1 < map->elements; i += 2)
        if (text(map->element[i]) == name) {
            const auto* v = map->element[i + 1];
            if (v->type == REDIS_REPLY_INTEGER) return v->integer;
            return fallback;
        }
    return fallback;
}

std::string string_field(const redisReply* map, std::string_view name) {
    for (std::size_t i = 0; i + 1 < map->elements; i += 2)
        if (text(map->element[i]) == name) return text(map->element[i + 1]);
    return {};
}

[[noreturn]] void refused(const std::string& where, const std::string& what, const redisReply* r) {
    throw UsageError(where + ": " + what + " refused: " + text(r));
}

std::vector<PendingEntry> pending_of(const redisReply* r) {
    std::vector<PendingEntry> out;
    if (r->type != REDIS_REPLY_ARRAY) return out;
    for (std::size_t i = 0; i < r->elements; ++i) {
        const auto* e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 4) continue;
        out.push_back({text(e->element[0]), text(e->element[1]), e->element[2]->integer,
                       e->element[3]->integer});
    }
    return out;
}

}  // namespace postroom::redis::detail
