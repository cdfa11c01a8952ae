#pragma once
// The deleter for std::unique_ptr over a C library handle: calls the library's own free
// function. Every owning alias (librdkafka, SQLite, libpq, hiredis) is built from it.

namespace postroom::detail {

template <auto Fn>
struct Deleter {
    template <typename T>
    void operator()(T* p) const noexcept {
        if (p) Fn(p);
    }
};

}  // namespace postroom::detail
