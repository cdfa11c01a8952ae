#include "postroom/error.hpp"

namespace postroom {

std::string_view to_string(ErrorKind kind) noexcept {
    switch (kind) {
        case ErrorKind::configuration: return "configuration";
        case ErrorKind::transport: return "transport";
        case ErrorKind::fatal_client: return "fatal_client";
        case ErrorKind::storage: return "storage";
        case ErrorKind::codec: return "codec";
        case ErrorKind::usage: return "usage";
    }
    return "unknown";
}

std::string_view to_string(Retriable retriable) noexcept {
    switch (retriable) {
        case Retriable::yes: return "yes";
        case Retriable::no: return "no";
        case Retriable::unknown: return "unknown";
    }
    return "unknown";
}

}  // namespace postroom
