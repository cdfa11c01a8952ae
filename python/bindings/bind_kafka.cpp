// Kafka producer, consumer and admin client, as used by postroom/kafka.py.
#include "common.hpp"

#include <pybind11/functional.h>

#include "postroom/binding.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/admin.hpp"
#include "postroom/kafka/consumer.hpp"
#include "postroom/kafka/producer.hpp"

namespace postroom::python {

using namespace postroom::kafka;
using namespace postroom::cloudevents;
using namespace std::chrono;

namespace {

py::object retriable_value(Retriable r) {
    if (r == Retriable::yes) return py::bool_(true);
    if (r == Retriable::no) return py::bool_(false);
    return py::none();
}

const char* persistence_name(Persistence p) {
    switch (p) {
        case Persistence::persisted: return "persisted";
        case Persistence::possibly_persisted: return "possibly_persisted";
        default: return "not_persisted";
    }
}

}  // namespace

EventMode to_mode(const std::string& mode) {
    if (mode == "binary") return EventMode::binary;
    if (mode == "structured") return EventMode::structured;
    throw py::value_error("mode must be 'binary' or 'structured', not '" + mode + "'");
}

// Remembers the last headers object converted, so a batch whose items share one headers
// list converts it once. Only used while iterating a list or tuple: no Python code runs
// between items then, so the object cannot change; the reference keeps its address unique.
const Headers& HeaderCache::get(const py::handle& headers) {
    if (!last || headers.ptr() != last.ptr()) {
        converted = to_headers(headers);
        last = py::reinterpret_borrow<py::object>(headers);
    }
    return converted;
}

// One item of send()/send_batch() to an outgoing message.
OutgoingMessage to_outgoing(const std::string& topic, const py::handle& key,
                            const py::handle& value, const py::handle& headers, EventMode mode,
                            HeaderCache* cache) {
    auto convert_headers = [&]() -> Headers {
        if (headers.is_none()) return {};
        return cache ? cache->get(headers) : to_headers(headers);
    };
    if (!PyBytes_Check(value.ptr()) && py::isinstance<Event>(value)) {
        auto m = to_message(value.cast<const Event&>(), topic,
                            key.is_none() ? std::nullopt : to_bytes(key, "key"), mode);
        for (auto& h : convert_headers()) m.headers.push_back(std::move(h));
        return m;
    }
    OutgoingMessage m;
    m.topic = topic;
    if (!key.is_none()) m.key = to_bytes(key, "key");
    m.value = to_bytes(value, "value");
    m.headers = convert_headers();
    return m;
}

std::vector<OutgoingMessage> to_batch(const std::string& topic, const py::iterable& items,
                                      const py::object& key, EventMode mode) {
    std::vector<OutgoingMessage> out;
    const bool sequence = PyList_Check(items.ptr()) || PyTuple_Check(items.ptr());
    if (sequence) out.reserve(static_cast<std::size_t>(py::len(items)));
    const auto default_key = to_bytes(key, "key");
    HeaderCache header_cache;
    for (auto item : items) {
        PyObject* p = item.ptr();
        if (PyBytes_Check(p)) {  // the fast path: raw values
            char* data;
            Py_ssize_t size;
            PyBytes_AsStringAndSize(p, &data, &size);
            out.push_back({topic,
                           default_key,
                           std::string(data, static_cast<std::size_t>(size)),
                           {},
                           std::nullopt});
        } else if (PyTuple_Check(p)) {
            const Py_ssize_t size = PyTuple_GET_SIZE(p);
            if (size < 2 || size > 3)
                throw py::type_error(
                    "batch items as tuples must be (key, value) or (key, value, headers)");
            out.push_back(to_outgoing(topic, PyTuple_GET_ITEM(p, 0), PyTuple_GET_ITEM(p, 1),
                                      size == 3 ? PyTuple_GET_ITEM(p, 2) : Py_None, mode,
                                      sequence ? &header_cache : nullptr));
        } else {
            out.push_back(to_outgoing(topic, key, item, py::none(), mode));
        }
    }
    return out;
}

std::vector<TopicPartition> to_partitions(const py::iterable& items) {
    std::vector<TopicPartition> out;
    for (auto item : items) {
        auto t = py::reinterpret_borrow<py::sequence>(item);
        out.push_back({t[0].cast<std::string>(), t[1].cast<int32_t>()});
    }
    return out;
}

py::list from_partitions(const std::vector<TopicPartition>& tps) {
    py::list out;
    for (const auto& tp : tps) out.append(py::make_tuple(tp.topic, tp.partition));
    return out;
}

py::list from_offsets(const std::vector<TopicPartitionOffset>& tpos) {
    py::list out;
    for (const auto& t : tpos) out.append(py::make_tuple(t.topic, t.partition, t.offset));
    return out;
}

namespace {

// The Python handler runs on the polling thread, which released the GIL around poll().
std::function<void(const std::vector<TopicPartition>&)> rebalance_callback(const py::object& fn) {
    if (fn.is_none()) return {};
    auto held = hold(fn.cast<py::function>());
    return [held](const std::vector<TopicPartition>& tps) {
        py::gil_scoped_acquire gil;
        (*held)(from_partitions(tps));
    };
}

}  // namespace

void bind_kafka(py::module_& m) {
    m.def("set_default_log_level", &set_default_log_level, py::arg("level"),
          "librdkafka lines at or below this syslog level go to stderr (-1 = none).");
    m.def("default_log_level", &default_log_level);
    py::class_<DeliveryReport>(m, "DeliveryReport", "What the broker said about one message.")
        .def_readonly("partition", &DeliveryReport::partition)
        .def_readonly("offset", &DeliveryReport::offset)
        .def_readonly("error_code", &DeliveryReport::error_code)
        .def_readonly("id", &DeliveryReport::id, "Redis Streams: the entry id ('' on Kafka).")
        .def_property_readonly("ok", &DeliveryReport::ok)
        .def_property_readonly("error",
                               [](const DeliveryReport& r) -> py::object {
                                   return r.ok() ? py::object(py::none())
                                                 : py::object(py::str(r.error_message()));
                               })
        .def_property_readonly(
            "retriable", [](const DeliveryReport& r) { return retriable_value(r.retriable()); })
        .def_property_readonly(
            "persistence", [](const DeliveryReport& r) { return persistence_name(r.persistence); })
        .def("__repr__", [](const DeliveryReport& r) {
            if (r.ok() && !r.id.empty()) return "DeliveryReport(id='" + r.id + "')";
            return r.ok() ? "DeliveryReport(partition=" + std::to_string(r.partition) +
                                ", offset=" + std::to_string(r.offset) + ")"
                          : "DeliveryReport(error=" +
                                py::repr(py::str(r.error_message())).cast<std::string>() +
                                ", persistence='" + persistence_name(r.persistence) + "')";
        });

    py::class_<BatchDelivery, std::shared_ptr<BatchDelivery>>(
        m, "BatchResult", "Delivery reports of one batch, in the order the messages were given.")
        .def("__len__", &BatchDelivery::size)
        .def_property_readonly("failed", &BatchDelivery::failed)
        .def_property_readonly(
            "delivered", [](const BatchDelivery& b) { return b.size() - b.pending() - b.failed(); })
        .def_property_readonly("pending", &BatchDelivery::pending)
        .def_property_readonly("done", &BatchDelivery::done)
        .def("__getitem__",
             [](const BatchDelivery& b, py::ssize_t i) {
                 auto n = static_cast<py::ssize_t>(b.size());
                 if (i < 0) i += n;
                 if (i < 0 || i >= n) throw py::index_error("batch index out of range");
                 return b.reports()[static_cast<std::size_t>(i)];
             })
        .def_property_readonly("reports", [](const BatchDelivery& b) { return b.reports(); })
        .def(
            "failures",
            [](const BatchDelivery& b) {
                py::list out;
                for (std::size_t i = 0; i < b.size(); ++i)
                    if (!b.reports()[i].ok()) out.append(py::make_tuple(i, b.reports()[i]));
                return out;
            },
            "(index, DeliveryReport) for every message that failed.")
        .def("raise_for_failures", &BatchDelivery::raise_for_failures)
        .def("__repr__", [](const BatchDelivery& b) {
            return "BatchResult(size=" + std::to_string(b.size()) +
                   ", failed=" + std::to_string(b.failed()) +
                   ", pending=" + std::to_string(b.pending()) + ")";
        });

    py::class_<Message>(m, "Message", "A consumed record.")
        .def_readonly("topic", &Message::topic)
        .def_readonly("partition", &Message::partition)
        .def_readonly("offset", &Message::offset)
        .def_readonly("timestamp_ms", &Message::timestamp_ms)
        .def_readonly("id", &Message::id, "Redis Streams: the entry id ('' on Kafka).")
        .def_readonly("delivery_count", &Message::delivery_count,
                      "Redis Streams: deliveries of this entry to the group (0 on Kafka).")
        .def_property_readonly("position", &Message::position,
                               "The entry id (Redis) or the offset (Kafka), as text.")
        .def_property_readonly("key", [](const Message& msg) { return from_bytes(msg.key); })
        .def_property_readonly("value", [](const Message& msg) { return from_bytes(msg.value); })
        .def_property_readonly("headers",
                               [](const Message& msg) { return from_headers(msg.headers); })
        .def(
            "header",
            [](const Message& msg, const std::string& name) -> py::object {
                auto* h = find_header(msg.headers, name);
                return h ? from_bytes(h->value) : py::object(py::none());
            },
            py::arg("name"), "The first header with this name, or None.")
        .def_property_readonly("is_event",
                               [](const Message& msg) { return is_cloudevent(msg.headers); })
        .def(
            "event", [](const Message& msg) { return to_event(msg); },
            "Decodes the CloudEvent (binary or structured mode); raises CodecError if it is not "
            "one.")
        .def("__repr__", [](const Message& msg) {
            std::string key = msg.key ? py::repr(py::bytes(*msg.key)).cast<std::string>() : "None";
            return "Message(topic=" + py::repr(py::str(msg.topic)).cast<std::string>() +
                   ", partition=" + std::to_string(msg.partition) +
                   ", offset=" + std::to_string(msg.offset) + ", key=" + key + ", value=<" +
                   (msg.value ? std::to_string(msg.value->size()) + " bytes" : "None") + ">)";
        });

    py::class_<Producer>(m, "KafkaProducer")
        .def(py::init([](const std::string& broker_url, const std::string& client_id,
                         bool idempotent, const std::string& acks, const std::string& compression,
                         double linger, double delivery_timeout, double close_timeout,
                         const py::dict& properties) {
                 ProducerConfig c;
                 c.broker_url = broker_url;
                 c.client_id = client_id;
                 c.idempotent = idempotent;
                 c.acks = acks;
                 c.compression = compression;
                 c.linger = to_ms(linger);
                 c.delivery_timeout = to_ms(delivery_timeout);
                 c.close_timeout = to_ms(close_timeout);
                 c.properties = to_properties(properties);
                 py::gil_scoped_release release;
                 return std::make_unique<Producer>(std::move(c));
             }),
             py::kw_only(), py::arg("broker_url"), py::arg("client_id"), py::arg("idempotent"),
             py::arg("acks"), py::arg("compression"), py::arg("linger"),
             py::arg("delivery_timeout"), py::arg("close_timeout"), py::arg("properties"))
        .def(
            "send",
            [](Producer& p, const std::string& topic, const py::object& value,
               const py::object& key, const py::object& headers, std::optional<int32_t> partition,
               const std::string& mode, std::optional<double> timeout) {
                std::vector<OutgoingMessage> one;
                one.push_back(to_outgoing(topic, key, value, headers, to_mode(mode)));
                one.back().partition = partition;
                std::shared_ptr<BatchDelivery> batch;
                {
                    py::gil_scoped_release release;
                    batch = p.produce_batch(std::move(one));
                }
                bool done = interruptible(
                    to_timeout(timeout), [&](milliseconds slice) { return p.wait(*batch, slice); });
                if (!done)
                    throw TimeoutError("no delivery report for the message to topic '" + topic +
                                       "' in time; it may still be delivered");
                batch->reports().front().raise(topic);
                return batch->reports().front();
            },
            py::arg("topic"), py::arg("value"), py::kw_only(), py::arg("key") = py::none(),
            py::arg("headers") = py::none(), py::arg("partition") = py::none(),
            py::arg("mode") = "binary", py::arg("timeout") = py::none())
        .def(
            "produce",
            [](Producer& p, const std::string& topic, const py::object& value,
               const py::object& key, const py::object& headers, std::optional<int32_t> partition,
               const std::string& mode, const py::object& on_delivery) {
                auto msg = to_outgoing(topic, key, value, headers, to_mode(mode));
                msg.partition = partition;
                Producer::DeliveryCallback cb;
                if (!on_delivery.is_none()) {
                    auto held = hold(on_delivery.cast<py::function>());
                    cb = [held](const DeliveryReport& r) {
                        py::gil_scoped_acquire gil;
                        (*held)(r);
                    };
                }
                py::gil_scoped_release release;
                p.produce(msg, std::move(cb));
            },
            py::arg("topic"), py::arg("value"), py::kw_only(), py::arg("key") = py::none(),
            py::arg("headers") = py::none(), py::arg("partition") = py::none(),
            py::arg("mode") = "binary", py::arg("on_delivery") = py::none())
        .def(
            "send_batch",
            [](Producer& p, const std::string& topic, const py::iterable& items,
               const py::object& key, const std::string& mode, bool wait) {
                auto messages = to_batch(topic, items, key, to_mode(mode));
                std::shared_ptr<BatchDelivery> batch;
                {
                    py::gil_scoped_release release;
                    batch = p.produce_batch(std::move(messages));
                }
                if (wait)
                    interruptible(std::nullopt,
                                  [&](milliseconds slice) { return p.wait(*batch, slice); });
                return batch;
            },
            py::arg("topic"), py::arg("items"), py::kw_only(), py::arg("key") = py::none(),
            py::arg("mode") = "binary", py::arg("wait") = true)
        .def(
            "wait",
            [](Producer& p, const std::shared_ptr<BatchDelivery>& batch,
               std::optional<double> timeout) {
                return interruptible(to_timeout(timeout),
                                     [&](milliseconds slice) { return p.wait(*batch, slice); });
            },
            py::arg("batch"), py::arg("timeout") = py::none())
        .def(
            "poll",
            [](Producer& p, double timeout) {
                int served = 0;
                interruptible(to_timeout(timeout), [&](milliseconds slice) {
                    served += p.poll(slice);
                    return served > 0;
                });
                return served;
            },
            py::arg("timeout") = 0.0)
        .def(
            "flush",
            [](Producer& p, std::optional<double> timeout) {
                return interruptible(to_timeout(timeout),
                                     [&](milliseconds slice) { return p.flush(slice); });
            },
            py::arg("timeout") = py::none())
        .def_property_readonly("in_flight", &Producer::in_flight)
        .def_property_readonly("closed", &Producer::closed)
        .def_property_readonly("idempotence_enabled", &Producer::idempotence_enabled)
        .def(
            "close",
            [](Producer& p, std::optional<double> timeout) {
                py::gil_scoped_release release;
                if (timeout)
                    p.close(*to_timeout(timeout));
                else
                    p.close();
            },
            py::arg("timeout") = py::none());

    py::class_<Consumer>(m, "KafkaConsumer")
        .def(py::init([](const std::string& broker_url, const std::string& client_id,
                         const std::string& group_id, const std::string& offset_reset,
                         double session_timeout, double max_poll_interval,
                         const py::dict& properties) {
                 ConsumerConfig c;
                 c.broker_url = broker_url;
                 c.client_id = client_id;
                 c.group_id = group_id;
                 if (offset_reset == "earliest")
                     c.offset_reset = OffsetReset::earliest;
                 else if (offset_reset == "latest")
                     c.offset_reset = OffsetReset::latest;
                 else
                     throw ConfigurationError("offset_reset must be 'earliest' or 'latest', not '" +
                                              offset_reset + "'");
                 c.session_timeout = to_ms(session_timeout);
                 c.max_poll_interval = to_ms(max_poll_interval);
                 c.properties = to_properties(properties);
                 py::gil_scoped_release release;
                 return std::make_unique<Consumer>(std::move(c));
             }),
             py::kw_only(), py::arg("broker_url"), py::arg("client_id"), py::arg("group_id"),
             py::arg("offset_reset"), py::arg("session_timeout"), py::arg("max_poll_interval"),
             py::arg("properties"))
        .def(
            "subscribe",
            [](Consumer& c, const std::vector<std::string>& topics, const py::object& on_assigned,
               const py::object& on_revoked, const py::object& on_lost) {
                RebalanceListener l{rebalance_callback(on_assigned), rebalance_callback(on_revoked),
                                    rebalance_callback(on_lost)};
                c.subscribe(topics, std::move(l));
            },
            py::arg("topics"), py::kw_only(), py::arg("on_assigned") = py::none(),
            py::arg("on_revoked") = py::none(), py::arg("on_lost") = py::none())
        .def(
            "assign",
            [](Consumer& c, const py::iterable& items) {
                std::vector<TopicPartitionOffset> parts;
                for (auto item : items) {
                    auto t = py::reinterpret_borrow<py::sequence>(item);
                    parts.push_back(
                        {t[0].cast<std::string>(), t[1].cast<int32_t>(),
                         t.size() > 2 ? t[2].cast<int64_t>() : Consumer::offset_stored});
                }
                c.assign(parts);
            },
            py::arg("partitions"))
        .def(
            "poll",
            [](Consumer& c, std::optional<double> timeout) -> py::object {
                std::optional<Message> got;
                interruptible(to_timeout(timeout), [&](milliseconds slice) {
                    got = c.poll(slice);
                    return got.has_value();
                });
                if (!got) return py::none();
                return py::cast(std::move(*got));
            },
            py::arg("timeout") = py::none())
        .def(
            "poll_batch",
            [](Consumer& c, std::size_t max_messages, std::optional<double> timeout) {
                std::vector<Message> got;
                interruptible(to_timeout(timeout), [&](milliseconds slice) {
                    got = c.poll_batch(max_messages, slice);
                    return !got.empty();
                });
                return got;
            },
            py::arg("max_messages"), py::arg("timeout") = py::none())
        .def(
            "mark_done", [](Consumer& c, const Message& msg) { c.mark_done(msg); },
            py::arg("message"))
        .def(
            "mark_done_offset",
            [](Consumer& c, const std::string& topic, int32_t partition, int64_t offset) {
                c.mark_done({topic, partition}, offset);
            },
            py::arg("topic"), py::arg("partition"), py::arg("offset"))
        .def("commit",
             [](Consumer& c) {
                 std::vector<TopicPartitionOffset> done;
                 {
                     py::gil_scoped_release release;
                     done = c.commit();
                 }
                 return from_offsets(done);
             })
        .def(
            "committed",
            [](Consumer& c, const py::iterable& partitions, double timeout) {
                auto tps = to_partitions(partitions);
                std::vector<TopicPartitionOffset> got;
                {
                    py::gil_scoped_release release;
                    got = c.committed(tps, to_ms(timeout));
                }
                return from_offsets(got);
            },
            py::arg("partitions"), py::arg("timeout") = 10.0)
        .def(
            "seek",
            [](Consumer& c, const std::string& topic, int32_t partition, int64_t offset,
               double timeout) {
                py::gil_scoped_release release;
                c.seek({topic, partition}, offset, to_ms(timeout));
            },
            py::arg("topic"), py::arg("partition"), py::arg("offset"), py::arg("timeout") = 10.0)
        .def("assignment", [](Consumer& c) { return from_partitions(c.assignment()); })
        .def_property_readonly("outstanding", &Consumer::outstanding)
        .def_property_readonly("closed", &Consumer::closed)
        .def("close", [](Consumer& c) {
            py::gil_scoped_release release;
            c.close();
        });

    py::class_<TopicInfo>(m, "TopicInfo")
        .def_readonly("name", &TopicInfo::name)
        .def_readonly("partitions", &TopicInfo::partitions)
        .def_readonly("replication_factor", &TopicInfo::replication_factor)
        .def("__repr__", [](const TopicInfo& t) {
            return "TopicInfo(name=" + py::repr(py::str(t.name)).cast<std::string>() +
                   ", partitions=" + std::to_string(t.partitions) +
                   ", replication_factor=" + std::to_string(t.replication_factor) + ")";
        });

    py::class_<Admin>(m, "KafkaAdmin")
        .def(py::init([](const std::string& broker_url, const std::string& client_id,
                         double timeout, const py::dict& properties) {
                 AdminConfig c;
                 c.broker_url = broker_url;
                 c.client_id = client_id;
                 c.timeout = to_ms(timeout);
                 c.properties = to_properties(properties);
                 py::gil_scoped_release release;
                 return std::make_unique<Admin>(std::move(c));
             }),
             py::kw_only(), py::arg("broker_url"), py::arg("client_id"), py::arg("timeout"),
             py::arg("properties"))
        .def("create_topic", &Admin::create_topic, py::arg("name"), py::arg("partitions") = 3,
             py::arg("replication_factor") = 1,
             py::arg("config") = std::map<std::string, std::string>{}, py::arg("exist_ok") = false,
             py::call_guard<py::gil_scoped_release>())
        .def("delete_topic", &Admin::delete_topic, py::arg("name"),
             py::call_guard<py::gil_scoped_release>())
        .def("list_topics", &Admin::list_topics, py::call_guard<py::gil_scoped_release>())
        .def("describe_topic", &Admin::describe_topic, py::arg("name"),
             py::call_guard<py::gil_scoped_release>())
        .def(
            "watermarks",
            [](Admin& a, const std::string& topic, int32_t partition) {
                Watermarks w;
                {
                    py::gil_scoped_release release;
                    w = a.watermarks({topic, partition});
                }
                return py::make_tuple(w.low, w.high);
            },
            py::arg("topic"), py::arg("partition"))
        .def("ping", &Admin::ping, py::call_guard<py::gil_scoped_release>());
}

}  // namespace postroom::python
