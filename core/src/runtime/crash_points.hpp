#pragma once
// Deterministic crash points for fault tests: POSTROOM_CRASH_POINT=NAME[:N] makes the
// process exit at once (std::_Exit(137), like kill -9: no destructors, no flush) the Nth
// time (default 1st) it reaches the durability boundary NAME. Names:
//   after-handler        the handler returned, its transaction is not committed
//   after-store-commit   effect and dedupe mark committed, offset not yet committed
//   after-dead-letter    dead letter acknowledged, offset not yet committed
//   after-offset-commit  offsets committed
// Unset (the normal case) costs one branch.

#include <string_view>

namespace postroom::runtime::detail {

void crash_point(std::string_view name) noexcept;

}  // namespace postroom::runtime::detail
