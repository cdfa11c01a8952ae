#pragma once
// Reading what Redis answers to stream commands, shared by the consumer and the
// administration: entry fields, the maps of XINFO, the lists of XPENDING, and the one way a
// refused command becomes an error.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "connection.hpp"
#include "postroom/redis/streams.hpp"

namespace postroom::redis::detail {

// The fields of an entry (its reply's second element); none unless `r` is an array.
Fields fields_of(const redisReply* r);

// The value of `name` in an XINFO map, or `fallback` when absent or not an integer.
int64_t integer_field(const redisReply* map, std::string_view name, int64_t fallback);
// The value of `name` in an XINFO map, or empty when absent.
std::string string_field(const redisReply* map, std::string_view name);

// The entries of an XPENDING (extended form) reply.
std::vector<PendingEntry> pending_of(const redisReply* r);

// Throws UsageError: `what` (a command) was refused by the server at `where`.
[[noreturn]] void refused(const std::string& where, const std::string& what, const redisReply* r);

}  // namespace postroom::redis::detail
