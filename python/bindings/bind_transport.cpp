// The broker URL, parsed once where it enters (postroom.connect), and what Python asks every
// transport through the core's one door.
#include <pybind11/stl.h>

#include "common.hpp"
#include "postroom/broker_url.hpp"
#include "postroom/redact.hpp"

namespace postroom::python {

namespace {

const char* scheme_name(BrokerScheme scheme) {
    switch (scheme) {
        case BrokerScheme::kafka: return "kafka";
        case BrokerScheme::embedded: return "embedded";
        case BrokerScheme::redis: return "redis";
    }
    return "unknown";
}

}  // namespace

void bind_transport(py::module_& m) {
    py::class_<BrokerUrl>(m, "BrokerUrl", "A broker URL, parsed and checked (it does not connect).")
        .def_property_readonly(
            "scheme", [](const BrokerUrl& u) { return scheme_name(u.scheme); },
            "'kafka', 'embedded' or 'redis': which transport serves it.")
        .def_property_readonly(
            "hosts",
            [](const BrokerUrl& u) {
                std::vector<std::pair<std::string, int>> out;
                for (const auto& h : u.hosts) out.emplace_back(h.host, h.port);
                return out;
            },
            "(host, port) pairs (kafka, redis).")
        .def_property_readonly(
            "bootstrap_servers",
            [](const BrokerUrl& u) {
                return u.scheme == BrokerScheme::kafka ? u.bootstrap_servers() : std::string();
            },
            "kafka://: the host:port list for Kafka clients ('' for other schemes).")
        .def_readonly("embedded_name", &BrokerUrl::embedded_name,
                      "embedded://NAME: the name ('' = the default in-process broker).")
        .def_readonly("redis_db", &BrokerUrl::redis_db)
        .def_readonly("text", &BrokerUrl::text, "The URL as given.")
        .def("__repr__",
             [](const BrokerUrl& u) { return "BrokerUrl(" + redacted_url(u.text) + ")"; });
    m.def(
        "parse_broker_url", [](const std::string& url) { return parse_broker_url(url); },
        py::arg("url"),
        "Parses kafka://host:port[,host:port], embedded://[name] or redis://host:port/db; raises "
        "ConfigurationError saying what is accepted.");
}

}  // namespace postroom::python
