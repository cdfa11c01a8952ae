#pragma once
// Helpers shared by the bind_<area>.cpp files: GIL handling and conversions. Bindings
// convert and manage the GIL; behaviour lives in the core.

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "postroom/binding.hpp"
#include "postroom/message.hpp"

namespace postroom::python {

namespace py = pybind11;

void bind_errors(py::module_& m);
void bind_event(py::module_& m);
void bind_kafka(py::module_& m);
void bind_embedded(py::module_& m);

void bind_runtime(py::module_& m);
void bind_outbox(py::module_& m);
void bind_redis(py::module_& m);
void bind_dlq(py::module_& m);
void bind_transport(py::module_& m);

// A Python object that may be released from a thread that does not hold the GIL (C++
// callbacks keep their Python callables this way).
template <typename T>
std::shared_ptr<T> hold(const T& object) {
    return std::shared_ptr<T>(new T(object), [](T* p) {
        py::gil_scoped_acquire gil;
        delete p;
    });
}

// Gives the calling thread a Python thread state for the rest of its life, unless it has
// one. Callbacks on threads the core started (processor lanes) call this before taking the
// GIL: otherwise every acquisition creates and deletes a thread state, an mmap and munmap
// each time.
void keep_thread_state();

// The GIL, for a callback that may run on a thread the core started.
class CallbackGil {
public:
    CallbackGil() = default;

private:
    struct Keep {
        Keep() { keep_thread_state(); }
    } keep_;
    py::gil_scoped_acquire gil_;
};

// Float seconds to milliseconds (for durations the caller always gives).
std::chrono::milliseconds to_ms(double seconds);

// {name: value} to librdkafka pass-through properties (values stringified).
std::map<std::string, std::string> to_properties(const py::dict& d);

// Float seconds (None = forever) to milliseconds.
std::optional<std::chrono::milliseconds> to_timeout(const std::optional<double>& seconds);

// bytes, bytearray, memoryview or str (UTF-8) to a byte string; None to nullopt.
std::optional<std::string> to_bytes(const py::handle& value, const char* what);
py::object from_bytes(const std::optional<std::string>& value);

// [(name, bytes|str|None), ...] or {name: value} to headers.
Headers to_headers(const py::handle& headers);
py::list from_headers(const Headers& headers);

// Runs `step(slice)` with the GIL released, in slices of at most 100 ms, until it returns
// true or the timeout passes; checks for signals (Ctrl-C) between slices. Returns whether
// `step` succeeded.
// Outgoing messages from Python arguments (bind_kafka.cpp), shared by every producer:
// an Event (encoded in `mode`), bytes/str values, or (key, value[, headers]) tuples.
struct HeaderCache {
    py::object last;
    Headers converted;
    const Headers& get(const py::handle& headers);
};
cloudevents::EventMode to_mode(const std::string& mode);
OutgoingMessage to_outgoing(const std::string& topic, const py::handle& key,
                            const py::handle& value, const py::handle& headers,
                            cloudevents::EventMode mode, HeaderCache* cache = nullptr);
std::vector<OutgoingMessage> to_batch(const std::string& topic, const py::iterable& items,
                                      const py::object& key, cloudevents::EventMode mode);
std::vector<TopicPartition> to_partitions(const py::iterable& items);
py::list from_partitions(const std::vector<TopicPartition>& tps);

template <typename Step>
bool interruptible(std::optional<std::chrono::milliseconds> timeout, Step&& step) {
    using namespace std::chrono;
    const auto deadline =
        timeout ? steady_clock::now() + *timeout : steady_clock::time_point::max();
    for (;;) {
        auto now = steady_clock::now();
        auto left = timeout ? duration_cast<milliseconds>(deadline - now) : milliseconds(100);
        if (left.count() < 0) left = milliseconds(0);
        auto slice = std::min(left, milliseconds(100));
        bool done;
        {
            py::gil_scoped_release release;
            done = step(slice);
        }
        if (done) return true;
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        if (timeout && steady_clock::now() >= deadline) return false;
    }
}

}  // namespace postroom::python
