#pragma once
// The field codec of Redis Streams: how a message, its key, value and headers, maps onto the
// fields of a stream entry and back. The binding itself is described (and to_fields() /
// from_fields() are declared) in postroom/redis/streams.hpp; this header adds what the
// producer needs beyond it. Pure functions: no I/O, no hiredis.

#include <string_view>

#include "postroom/message.hpp"
#include "postroom/redis/streams.hpp"

namespace postroom::redis::detail {

// XADD needs a field: an entry with no key, no value and no headers has only this one.
inline constexpr std::string_view nothing_field = "\\~";

// The fields an XADD of `message` sends: to_fields(message), or the single nothing_field
// when that is empty.
Fields entry_fields(const OutgoingMessage& message);

}  // namespace postroom::redis::detail
