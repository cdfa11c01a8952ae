#pragma once
// Bounded echoes of outside text (user input, a handler's exception) in error messages and
// headers: a long text is cut, and the cut says how long the whole was.
#include <cstddef>
#include <string>
#include <string_view>

namespace postroom::detail {

// `text` when it has at most `max_bytes` bytes; else its first bytes (a UTF-8 character is
// never split) followed by "... (N bytes)".
inline std::string excerpt(std::string_view text, std::size_t max_bytes = 64) {
    if (text.size() <= max_bytes) return std::string(text);
    std::size_t cut = max_bytes;
    // Back up over continuation bytes (10xxxxxx) to the start of the character at the cut.
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    return std::string(text.substr(0, cut)) + "... (" + std::to_string(text.size()) + " bytes)";
}

}  // namespace postroom::detail
