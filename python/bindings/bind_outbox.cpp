// postroom._core: the transactional outbox and its relay.
#include <pybind11/stl.h>

#include "common.hpp"
#include "postroom/outbox/outbox.hpp"

namespace postroom::python {

using namespace postroom::outbox;

namespace {

py::dict status_dict(const OutboxStatus& s) {
    py::dict d;
    d["pending"] = s.pending;
    d["failed"] = s.failed;
    d["sent"] = s.sent;
    d["oldest_pending_age"] = s.oldest_pending_age_seconds
                                  ? py::object(py::float_(*s.oldest_pending_age_seconds))
                                  : py::object(py::none());
    py::list rows;
    for (const auto& f : s.failed_rows) {
        py::dict r;
        r["seq"] = f.seq;
        r["id"] = f.id;
        r["aggregate_id"] = f.aggregate_id;
        r["topic"] = f.topic;
        r["error"] = f.error;
        rows.append(r);
    }
    d["failed_rows"] = rows;
    return d;
}

const char* payload_name(PayloadColumn p) {
    switch (p) {
        case PayloadColumn::text: return "text";
        case PayloadColumn::json: return "json";
        case PayloadColumn::jsonb: return "jsonb";
        default: return "bytea";
    }
}

PayloadColumn payload_of(const std::string& name) {
    if (name == "bytea") return PayloadColumn::bytea;
    if (name == "text") return PayloadColumn::text;
    if (name == "json") return PayloadColumn::json;
    if (name == "jsonb") return PayloadColumn::jsonb;
    throw py::value_error("payload must be 'bytea', 'text', 'json' or 'jsonb'");
}

py::dict counters_dict(const RelayCounters& c) {
    py::dict d;
    d["published"] = c.published;
    d["failed"] = c.failed;
    d["batches"] = c.batches;
    d["blocked_waits"] = c.blocked_waits;
    d["standby_waits"] = c.standby_waits;
    d["purged"] = c.purged;
    return d;
}

// The Python-facing relay: the core Outbox plus an error raised by a signal while waiting.
struct PyOutbox {
    std::unique_ptr<Outbox> outbox;
    std::shared_ptr<py::object> pending_error = std::make_shared<py::object>();
    PyOutbox() = default;
    PyOutbox(const PyOutbox&) = delete;
    PyOutbox& operator=(const PyOutbox&) = delete;
    ~PyOutbox() {
        if (!outbox) return;
        py::gil_scoped_release release;
        outbox.reset();
    }
    void raise_pending() {
        if (!*pending_error) return;
        auto error = std::exchange(*pending_error, py::object());
        PyErr_SetObject(py::type::of(error).ptr(), error.ptr());
        throw py::error_already_set();
    }
};

}  // namespace

void bind_outbox(py::module_& m) {
    m.def(
        "outbox_row",
        [](const Event& event, const std::string& aggregate_type, const std::string& aggregate_id,
           const std::optional<std::string>& topic) {
            auto row = row_for(event, aggregate_type, aggregate_id, topic);
            return py::make_tuple(
                row.id, row.aggregate_type, row.aggregate_id, row.type,
                row.payload ? py::object(py::bytes(*row.payload)) : py::object(py::none()),
                row.headers_json,
                row.topic ? py::object(py::str(*row.topic)) : py::object(py::none()));
        },
        py::arg("event"), py::arg("aggregate_type"), py::arg("aggregate_id"),
        py::arg("topic") = py::none(),
        "The outbox row for an event: (id, aggregatetype, aggregateid, type, payload, headers, "
        "topic).");
    m.def(
        "outbox_insert_statement",
        [](const std::string& dialect, const std::string& table, const std::string& payload) {
            const auto column = payload_of(payload);
            if (dialect == "sqlite") return insert_statement(Dialect::sqlite, table);
            if (dialect == "psycopg")
                return insert_statement(Dialect::postgres, table, false, column);
            if (dialect == "postgres")
                return insert_statement(Dialect::postgres, table, true, column);
            throw py::value_error("dialect must be 'sqlite', 'psycopg' or 'postgres'");
        },
        py::arg("dialect"), py::arg("table"), py::arg("payload") = "bytea");
    m.def(
        "parse_additional_placement",
        [](const std::string& spec) {
            std::vector<std::pair<std::string, std::string>> out;
            for (const auto& f : parse_additional_placement(spec))
                out.emplace_back(f.column, f.header);
            return out;
        },
        py::arg("spec"),
        "Debezium's table.fields.additional.placement ('column:header[:alias],...') as "
        "(column, header) pairs.");

    py::class_<PyOutbox>(m, "Outbox")
        .def(py::init([](const std::string& database_url, const std::string& broker_url,
                         const std::string& table, const std::string& topic,
                         const std::string& source, std::size_t batch_size, double poll_interval,
                         double publish_timeout, double lease, double blocked_backoff_max,
                         bool delete_sent, double retention, double purge_interval,
                         std::size_t max_message_bytes, const py::dict& producer_properties,
                         const std::string& topic_template, const std::string& route_by_field,
                         const std::vector<std::pair<std::string, std::string>>& additional_fields,
                         bool migrate) {
                 OutboxConfig c;
                 c.database_url = database_url;
                 c.broker_url = broker_url;
                 c.table = table;
                 c.topic = topic;
                 c.source = source;
                 c.batch_size = batch_size;
                 c.poll_interval = to_ms(poll_interval);
                 c.publish_timeout = to_ms(publish_timeout);
                 c.lease = to_ms(lease);
                 c.blocked_backoff_max = to_ms(blocked_backoff_max);
                 c.delete_sent = delete_sent;
                 c.retention = std::chrono::seconds(static_cast<int64_t>(retention));
                 c.purge_interval = std::chrono::seconds(static_cast<int64_t>(purge_interval));
                 c.max_message_bytes = max_message_bytes;
                 c.producer_properties = to_properties(producer_properties);
                 c.routing.topic_template = topic_template;
                 c.routing.route_by_field = route_by_field;
                 for (const auto& [column, header] : additional_fields)
                     c.routing.additional_fields.push_back({column, header});
                 c.migrate = migrate;
                 auto self = std::make_unique<PyOutbox>();
                 auto pending = self->pending_error;
                 auto* raw = self.get();
                 c.on_wait = [pending, raw] {
                     CallbackGil gil;
                     if (PyErr_CheckSignals() != 0) {
                         *pending = py::error_already_set().value();
                         if (raw->outbox) raw->outbox->stop();
                     }
                 };
                 {
                     py::gil_scoped_release release;
                     self->outbox = std::make_unique<Outbox>(std::move(c));
                 }
                 return self;
             }),
             py::kw_only(), py::arg("database_url"), py::arg("broker_url"), py::arg("table"),
             py::arg("topic"), py::arg("source"), py::arg("batch_size"), py::arg("poll_interval"),
             py::arg("publish_timeout"), py::arg("lease"), py::arg("blocked_backoff_max"),
             py::arg("delete_sent"), py::arg("retention"), py::arg("purge_interval"),
             py::arg("max_message_bytes"), py::arg("producer_properties"),
             py::arg("topic_template") = "", py::arg("route_by_field") = "aggregatetype",
             py::arg("additional_fields") = std::vector<std::pair<std::string, std::string>>{},
             py::arg("migrate") = false)
        .def_property_readonly("dialect",
                               [](const PyOutbox& o) {
                                   return o.outbox->dialect() == Dialect::sqlite ? "sqlite"
                                                                                 : "postgres";
                               })
        .def_property_readonly(
            "payload_column",
            [](const PyOutbox& o) { return payload_name(o.outbox->payload_column()); })
        .def_property_readonly("added_columns",
                               [](const PyOutbox& o) { return o.outbox->added_columns(); })
        .def("relay_once",
             [](PyOutbox& o) {
                 std::size_t n;
                 {
                     py::gil_scoped_release release;
                     n = o.outbox->relay_once();
                 }
                 return n;
             })
        .def("run",
             [](PyOutbox& o) {
                 {
                     py::gil_scoped_release release;
                     o.outbox->run();
                 }
                 o.raise_pending();
             })
        .def("stop", [](PyOutbox& o) { o.outbox->stop(); })
        .def_property_readonly("stopping", [](const PyOutbox& o) { return o.outbox->stopping(); })
        .def("status",
             [](PyOutbox& o) {
                 OutboxStatus s;
                 {
                     py::gil_scoped_release release;
                     s = o.outbox->status();
                 }
                 return status_dict(s);
             })
        .def("requeue_failed",
             [](PyOutbox& o) {
                 py::gil_scoped_release release;
                 return o.outbox->requeue_failed();
             })
        .def(
            "purge_sent_older_than",
            [](PyOutbox& o, double seconds) {
                py::gil_scoped_release release;
                return o.outbox->purge_sent_older_than(
                    std::chrono::seconds(static_cast<int64_t>(seconds)));
            },
            py::arg("seconds"))
        .def("counters", [](const PyOutbox& o) { return counters_dict(o.outbox->counters()); })
        .def("close", [](PyOutbox& o) {
            py::gil_scoped_release release;
            o.outbox->close();
        });
}

}  // namespace postroom::python
