// postroom._core: the private extension module. One bind_<area>.cpp per area.
#include "common.hpp"

#include <pybind11/stl.h>

namespace postroom::python {

std::optional<std::chrono::milliseconds> to_timeout(const std::optional<double>& seconds) {
    if (!seconds) return std::nullopt;
    if (*seconds < 0) throw py::value_error("timeout must not be negative");
    return to_ms(*seconds);
}

std::chrono::milliseconds to_ms(double seconds) {
    return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

std::map<std::string, std::string> to_properties(const py::dict& d) {
    std::map<std::string, std::string> p;
    for (auto item : d)
        p[py::str(item.first).cast<std::string>()] = py::str(item.second).cast<std::string>();
    return p;
}

namespace {

struct KeptThreadState {
    PyGILState_STATE state{};
    bool owned = false;
    KeptThreadState() = default;
    KeptThreadState(const KeptThreadState&) = delete;
    KeptThreadState& operator=(const KeptThreadState&) = delete;
    ~KeptThreadState() {
        // At thread exit. Not while the interpreter shuts down: it may not be entered then.
        if (!owned || !Py_IsInitialized() || _Py_IsFinalizing()) return;
        PyEval_RestoreThread(PyGILState_GetThisThreadState());
        PyGILState_Release(state);
    }
};

}  // namespace

void keep_thread_state() {
    thread_local KeptThreadState kept;
    if (kept.owned || PyGILState_GetThisThreadState() != nullptr) return;
    kept.state = PyGILState_Ensure();
    PyEval_SaveThread();
    kept.owned = true;
}

std::optional<std::string> to_bytes(const py::handle& value, const char* what) {
    if (value.is_none()) return std::nullopt;
    if (PyBytes_Check(value.ptr())) {
        char* data;
        Py_ssize_t size;
        PyBytes_AsStringAndSize(value.ptr(), &data, &size);
        return std::string(data, static_cast<std::size_t>(size));
    }
    if (PyUnicode_Check(value.ptr())) {
        Py_ssize_t size;
        const char* data = PyUnicode_AsUTF8AndSize(value.ptr(), &size);
        if (!data) throw py::error_already_set();
        return std::string(data, static_cast<std::size_t>(size));
    }
    if (PyObject_CheckBuffer(value.ptr())) {
        py::buffer_info info = py::reinterpret_borrow<py::buffer>(value).request();
        if (!PyBuffer_IsContiguous(reinterpret_cast<Py_buffer*>(&info), 'C') && info.ndim > 1)
            throw py::type_error(std::string(what) + " must be a contiguous buffer");
        return std::string(static_cast<const char*>(info.ptr),
                           static_cast<std::size_t>(info.size * info.itemsize));
    }
    throw py::type_error(std::string(what) + " must be bytes, bytearray, memoryview or str, not " +
                         std::string(py::str(py::type::of(value).attr("__name__"))));
}

py::object from_bytes(const std::optional<std::string>& value) {
    if (!value) return py::none();
    return py::bytes(*value);
}

Headers to_headers(const py::handle& headers) {
    Headers out;
    if (headers.is_none()) return out;
    auto add = [&](PyObject* name, PyObject* value) {
        if (!PyUnicode_Check(name)) throw py::type_error("header names must be str");
        Py_ssize_t size;
        const char* data = PyUnicode_AsUTF8AndSize(name, &size);
        if (!data) throw py::error_already_set();
        out.push_back({std::string(data, static_cast<std::size_t>(size)),
                       to_bytes(py::handle(value), "a header value")});
    };
    PyObject* h = headers.ptr();
    if (PyDict_Check(h)) {
        out.reserve(static_cast<std::size_t>(PyDict_Size(h)));
        PyObject *name, *value;
        Py_ssize_t pos = 0;
        while (PyDict_Next(h, &pos, &name, &value)) add(name, value);
        return out;
    }
    if (PyList_Check(h)) out.reserve(static_cast<std::size_t>(PyList_GET_SIZE(h)));
    for (auto item : py::reinterpret_borrow<py::iterable>(headers)) {
        PyObject* pair = item.ptr();
        if (PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2) {
            add(PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1));
            continue;
        }
        auto seq = py::reinterpret_borrow<py::sequence>(item);
        if (seq.size() != 2) throw py::type_error("headers must be (name, value) pairs");
        add(py::object(seq[0]).ptr(), py::object(seq[1]).ptr());
    }
    return out;
}

py::list from_headers(const Headers& headers) {
    py::list out(headers.size());
    for (std::size_t i = 0; i < headers.size(); ++i)
        out[i] = py::make_tuple(headers[i].name, from_bytes(headers[i].value));
    return out;
}

}  // namespace postroom::python

PYBIND11_MODULE(_core, m) {
    m.doc() = "postroom's C++ core (private; use the postroom package)";
    postroom::python::bind_errors(m);
    postroom::python::bind_transport(m);
    postroom::python::bind_event(m);
    postroom::python::bind_kafka(m);
    postroom::python::bind_embedded(m);
    postroom::python::bind_runtime(m);
    postroom::python::bind_outbox(m);
    postroom::python::bind_redis(m);
    postroom::python::bind_dlq(m);
}
