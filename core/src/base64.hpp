#pragma once
// RFC 4648 base64, used by the CloudEvents JSON format's data_base64 member.
// Small enough that a dependency would cost more than it saves.

#include <optional>
#include <string>
#include <string_view>

namespace postroom::detail {

std::string base64_encode(std::string_view bytes);
// nullopt when the text is not canonical padded base64.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace postroom::detail
