// The embedded broker (librdkafka's mock cluster), for embedded:// URLs and tests.
#include "common.hpp"

#include "postroom/embedded/broker.hpp"

namespace postroom::python {

void bind_embedded(py::module_& m) {
    using postroom::embedded::Broker;
    py::class_<Broker, std::shared_ptr<Broker>>(m, "EmbeddedBroker")
        .def_static("shared", &Broker::shared, py::arg("name") = "",
                    "The broker behind embedded://NAME in this process.")
        .def_property_readonly("bootstrap_servers", &Broker::bootstrap_servers)
        .def("create_topic", &Broker::create_topic, py::arg("topic"), py::arg("partitions") = 3,
             py::arg("replication_factor") = 1)
        .def("has_topic", &Broker::has_topic, py::arg("topic"))
        .def("push_request_errors", &Broker::push_request_errors, py::arg("api_key"),
             py::arg("errors"))
        .def("clear_request_errors", &Broker::clear_request_errors, py::arg("api_key"))
        .def("set_broker_down", &Broker::set_broker_down, py::arg("broker_id") = 1)
        .def("set_broker_up", &Broker::set_broker_up, py::arg("broker_id") = 1)
        .def("set_broker_rtt", &Broker::set_broker_rtt, py::arg("broker_id"), py::arg("rtt_ms"));
}

}  // namespace postroom::python
