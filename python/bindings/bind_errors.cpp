// Maps postroom::Error kinds onto the Python hierarchy in postroom/errors.py, and exposes the
// redaction rule every error, repr and CLI line uses for URLs (postroom/redact.hpp).
#include "common.hpp"

#include "postroom/error.hpp"
#include "postroom/redact.hpp"

namespace postroom::python {

namespace {

py::object retriable_value(Retriable r) {
    switch (r) {
        case Retriable::yes: return py::bool_(true);
        case Retriable::no: return py::bool_(false);
        default: return py::none();
    }
}

void raise_as(const char* class_name, const Error& e, const char* attribute = nullptr) {
    auto errors = py::module_::import("postroom.errors");
    py::object instance = errors.attr(class_name)(e.what());
    instance.attr("retriable") = retriable_value(e.retriable());
    instance.attr("code") = e.code();
    if (attribute) instance.attr("attribute") = attribute;
    PyErr_SetObject(py::type::of(instance).ptr(), instance.ptr());
}

}  // namespace

void bind_errors(py::module_& m) {
    py::register_exception_translator([](std::exception_ptr p) {
        if (!p) return;
        try {
            std::rethrow_exception(p);
        } catch (const CodecError& e) {
            raise_as("CodecError", e, e.attribute().c_str());
        } catch (const TimeoutError& e) {
            raise_as("BrokerTimeoutError", e);
        } catch (const Error& e) {
            switch (e.kind()) {
                case ErrorKind::configuration: raise_as("ConfigurationError", e); break;
                case ErrorKind::transport: raise_as("TransportError", e); break;
                case ErrorKind::fatal_client: raise_as("FatalClientError", e); break;
                case ErrorKind::storage: raise_as("StorageError", e); break;
                case ErrorKind::codec: raise_as("CodecError", e, ""); break;
                case ErrorKind::usage: raise_as("UsageError", e); break;
            }
        }
    });
    m.def("redacted_url", &redacted_url, py::arg("url"),
          "The URL with its password(s) replaced by '***' (user, hosts, path kept).");
    m.def("redact_secrets", &redact_secrets, py::arg("text"), py::arg("url"),
          "text with every password that url holds replaced by '***'.");
    m.attr("ERROR_KINDS") =
        py::make_tuple("configuration", "transport", "fatal_client", "storage", "codec", "usage");
}

}  // namespace postroom::python
