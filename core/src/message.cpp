#include "postroom/message.hpp"

namespace postroom {

const Header* find_header(const Headers& headers, std::string_view name) noexcept {
    for (const auto& h : headers)
        if (h.name == name) return &h;
    return nullptr;
}

}  // namespace postroom
