#pragma once
// Internals of the redaction rule (postroom/redact.hpp) for parsers that quote a piece of the
// URL they reject.

#include <string>
#include <string_view>

namespace postroom::detail {

// `part`, a view into `url`, with whatever of it the redaction rule hides in `url` replaced
// by "***" (e.g. the host piece "alice:pw@h" of kafka://alice:pw@h becomes "alice:***@h").
std::string redacted_part(std::string_view url, std::string_view part);

}  // namespace postroom::detail
