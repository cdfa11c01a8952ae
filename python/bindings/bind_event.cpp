// postroom.Event: the CloudEvents 1.0 value type.
#include "common.hpp"

#include "postroom/error.hpp"
#include "postroom/event.hpp"

namespace postroom::python {

namespace {

std::optional<std::string> optional_str(const py::object& o) {
    if (o.is_none()) return std::nullopt;
    return o.cast<std::string>();
}

// time=... (Ellipsis) means now; a datetime must be timezone-aware.
std::optional<std::string> to_time(const py::object& time) {
    if (time.is_none()) return std::nullopt;
    if (time.ptr() == Py_Ellipsis) return now_rfc3339();
    if (PyUnicode_Check(time.ptr())) return time.cast<std::string>();
    if (py::hasattr(time, "isoformat") && py::hasattr(time, "tzinfo")) {
        if (time.attr("tzinfo").is_none())
            throw py::value_error(
                "Event time must be timezone-aware (e.g. datetime.now(timezone.utc))");
        auto text = time.attr("isoformat")().cast<std::string>();
        if (text.size() >= 6 && text.compare(text.size() - 6, 6, "+00:00") == 0)
            text = text.substr(0, text.size() - 6) + "Z";
        return text;
    }
    throw py::type_error("Event time must be a str (RFC 3339) or a timezone-aware datetime");
}

Event make_event(const std::string& type, const std::string& source, const py::object& id,
                 const py::object& data, const py::object& datacontenttype, const py::object& time,
                 const py::object& subject, const py::object& dataschema,
                 const py::object& extensions, const std::string& specversion) {
    Event e;
    e.type = type;
    e.source = source;
    e.id = id.is_none() ? new_event_id() : id.cast<std::string>();
    e.specversion = specversion;
    e.time = to_time(time);
    e.subject = optional_str(subject);
    e.dataschema = optional_str(dataschema);
    e.datacontenttype = optional_str(datacontenttype);
    if (!data.is_none()) {
        if (PyDict_Check(data.ptr()) || PyList_Check(data.ptr()) || PyBool_Check(data.ptr()) ||
            PyLong_Check(data.ptr()) || PyFloat_Check(data.ptr())) {
            auto dumps = py::module_::import("json").attr("dumps");
            e.data = dumps(data, py::arg("separators") = py::make_tuple(",", ":"),
                           py::arg("ensure_ascii") = false)
                         .cast<std::string>();
            if (!e.datacontenttype) e.datacontenttype = "application/json";
        } else if (PyUnicode_Check(data.ptr())) {
            e.data = data.cast<std::string>();
            if (!e.datacontenttype) e.datacontenttype = "text/plain; charset=utf-8";
        } else {
            e.data = to_bytes(data, "Event data");
            if (!e.datacontenttype) e.datacontenttype = "application/octet-stream";
        }
    }
    if (!extensions.is_none()) {
        for (auto item : py::reinterpret_borrow<py::dict>(extensions)) {
            auto value = py::reinterpret_borrow<py::object>(item.second);
            std::string text = PyUnicode_Check(value.ptr()) ? value.cast<std::string>()
                               : PyBool_Check(value.ptr()) ? (value.cast<bool>() ? "true" : "false")
                                                           : py::str(value).cast<std::string>();
            e.extensions[item.first.cast<std::string>()] = text;
        }
    }
    e.validate();
    return e;
}

py::object optional_to_py(const std::optional<std::string>& v) {
    return v ? py::object(py::str(*v)) : py::object(py::none());
}

std::string repr(const Event& e) {
    std::string out = "Event(type=" + py::repr(py::str(e.type)).cast<std::string>() +
                      ", source=" + py::repr(py::str(e.source)).cast<std::string>() +
                      ", id=" + py::repr(py::str(e.id)).cast<std::string>();
    if (e.subject) out += ", subject=" + py::repr(py::str(*e.subject)).cast<std::string>();
    if (e.data)
        out += ", data=<" + std::to_string(e.data->size()) + " bytes" +
               (e.datacontenttype ? " " + *e.datacontenttype : std::string()) + ">";
    return out + ")";
}

}  // namespace

void bind_event(py::module_& m) {
    py::class_<Event>(m, "Event", R"doc(A CloudEvents 1.0 event.

Required: type and source; id defaults to a fresh UUID and time to now (pass time=None to
leave it out). data may be bytes, str, or a JSON-serialisable dict/list; the content type
defaults to application/octet-stream, text/plain or application/json accordingly.
Invalid attributes raise postroom.errors.CodecError naming the attribute.)doc")
        .def(py::init(&make_event), py::kw_only(), py::arg("type"), py::arg("source"),
             py::arg("id") = py::none(), py::arg("data") = py::none(),
             py::arg("datacontenttype") = py::none(), py::arg("time") = py::ellipsis(),
             py::arg("subject") = py::none(), py::arg("dataschema") = py::none(),
             py::arg("extensions") = py::none(), py::arg("specversion") = "1.0")
        .def_property_readonly("id", [](const Event& e) { return e.id; })
        .def_property_readonly("source", [](const Event& e) { return e.source; })
        .def_property_readonly("type", [](const Event& e) { return e.type; })
        .def_property_readonly("specversion", [](const Event& e) { return e.specversion; })
        .def_property_readonly("time", [](const Event& e) { return optional_to_py(e.time); })
        .def_property_readonly("subject", [](const Event& e) { return optional_to_py(e.subject); })
        .def_property_readonly("datacontenttype",
                               [](const Event& e) { return optional_to_py(e.datacontenttype); })
        .def_property_readonly("dataschema",
                               [](const Event& e) { return optional_to_py(e.dataschema); })
        .def_property_readonly(
            "data", [](const Event& e) { return from_bytes(e.data); },
            "The payload as bytes, or None.")
        .def_property_readonly(
            "extensions", [](const Event& e) { return e.extensions; },
            "Extension attributes (a copy).")
        .def_property_readonly(
            "text",
            [](const Event& e) -> py::object {
                if (!e.data) return py::none();
                return py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(
                    e.data->data(), static_cast<Py_ssize_t>(e.data->size()), "strict"));
            },
            "The payload decoded as UTF-8, or None.")
        .def(
            "json",
            [](const Event& e) -> py::object {
                if (!e.data) return py::none();
                return py::module_::import("json").attr("loads")(py::bytes(*e.data));
            },
            "The payload parsed as JSON.")
        .def("to_json", &Event::to_json, "JSON structured mode (application/cloudevents+json).")
        .def_static(
            "from_json",
            [](const py::object& text) {
                auto bytes = to_bytes(text, "structured event");
                return Event::from_json(bytes ? *bytes : std::string());
            },
            py::arg("text"))
        .def("validate", &Event::validate)
        .def("__eq__",
             [](const Event& a, const py::object& b) -> py::object {
                 if (!py::isinstance<Event>(b))
                     return py::reinterpret_borrow<py::object>(Py_NotImplemented);
                 return py::bool_(a == b.cast<const Event&>());
             })
        .def("__repr__", &repr)
        .def("__copy__", [](const Event& e) { return e; })
        .def(
            "__deepcopy__", [](const Event& e, py::dict) { return e; }, py::arg("memo"));
    // Events are values: mutable-looking hashing would lie.
    m.attr("Event").attr("__hash__") = py::none();
    m.def("new_event_id", &new_event_id, "A fresh random UUID (version 4) as text.");
}

}  // namespace postroom::python
