// Redis Streams producer, consumer and administration, as used by postroom/redis.py.
#include <pybind11/functional.h>

#include "common.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/admin.hpp"
#include "postroom/kafka/producer.hpp"
#include "postroom/redis/streams.hpp"

namespace postroom::python {

using namespace postroom::redis;
using namespace std::chrono;

namespace {

py::dict counters_dict(const StreamConsumerCounters& c) {
    py::dict d;
    d["claimed"] = c.claimed;
    d["deleted_while_pending"] = c.deleted_while_pending;
    d["groups_recreated"] = c.groups_recreated;
    d["reconnects"] = c.reconnects;
    d["acked"] = c.acked;
    return d;
}

}  // namespace

void bind_redis(py::module_& m) {
    py::class_<StreamProducer>(m, "RedisProducer")
        .def(py::init([](const std::string& broker_url, std::optional<std::size_t> maxlen,
                         double timeout) {
                 StreamProducerConfig c{broker_url, maxlen, to_ms(timeout)};
                 return std::make_unique<StreamProducer>(std::move(c));
             }),
             py::kw_only(), py::arg("broker_url"), py::arg("maxlen") = py::none(),
             py::arg("timeout") = 5.0)
        .def(
            "send",
            [](StreamProducer& p, const std::string& topic, const py::object& value,
               const py::object& key, const py::object& headers, std::optional<int32_t> partition,
               const std::string& mode) {
                std::vector<OutgoingMessage> one;
                one.push_back(to_outgoing(topic, key, value, headers, to_mode(mode)));
                one.back().partition = partition;
                std::vector<AddResult> results;
                {
                    py::gil_scoped_release release;
                    results = p.add_batch(one);
                }
                auto report = results.front().report();
                report.raise(topic);
                return report;
            },
            py::arg("topic"), py::arg("value"), py::kw_only(), py::arg("key") = py::none(),
            py::arg("headers") = py::none(), py::arg("partition") = py::none(),
            py::arg("mode") = "binary")
        .def(
            "send_batch",
            [](StreamProducer& p, const std::string& topic, const py::iterable& items,
               const py::object& key, const std::string& mode, bool wait) {
                auto messages = to_batch(topic, items, key, to_mode(mode));
                if (!wait) {
                    py::gil_scoped_release release;
                    return p.send_batch(std::move(messages));
                }
                std::vector<AddResult> results;
                {
                    py::gil_scoped_release release;
                    results = p.add_batch(messages);
                }
                std::vector<DeliveryReport> reports;
                reports.reserve(results.size());
                for (const auto& r : results) reports.push_back(r.report());
                return BatchDelivery::completed(std::move(messages), std::move(reports));
            },
            py::arg("topic"), py::arg("items"), py::kw_only(), py::arg("key") = py::none(),
            py::arg("mode") = "binary", py::arg("wait") = true)
        .def(
            "wait",
            [](StreamProducer& p, const std::shared_ptr<BatchDelivery>& batch) {
                py::gil_scoped_release release;
                p.wait(*batch);
                return batch->done();
            },
            py::arg("batch"))
        .def("flush", &StreamProducer::flush, py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("in_flight", &StreamProducer::in_flight)
        .def("close", &StreamProducer::close, py::call_guard<py::gil_scoped_release>());

    py::class_<StreamConsumer>(m, "RedisConsumer")
        .def(
            py::init([](const std::string& broker_url, const std::string& group,
                        const std::string& client_id, const std::string& consumer,
                        const std::string& start_id, double claim_min_idle, double claim_interval) {
                StreamConsumerConfig c;
                c.url = broker_url;
                c.group = group;
                c.client_id = client_id;
                c.consumer = consumer;
                c.start_id = start_id;
                c.claim_min_idle = to_ms(claim_min_idle);
                c.claim_interval = to_ms(claim_interval);
                return std::make_unique<StreamConsumer>(std::move(c));
            }),
            py::kw_only(), py::arg("broker_url"), py::arg("group"), py::arg("client_id"),
            py::arg("consumer"), py::arg("start_id"), py::arg("claim_min_idle"),
            py::arg("claim_interval"))
        .def(
            "subscribe",
            [](StreamConsumer& c, const std::vector<std::string>& streams) {
                py::gil_scoped_release release;
                c.subscribe(streams);
            },
            py::arg("streams"))
        .def(
            "poll_batch",
            [](StreamConsumer& c, std::size_t max_messages, std::optional<double> timeout) {
                std::vector<Message> out;
                interruptible(to_timeout(timeout), [&](milliseconds slice) {
                    out = c.poll_batch(max_messages, slice);
                    return !out.empty();
                });
                return out;
            },
            py::arg("max_messages"), py::arg("timeout"))
        .def("mark_done", &StreamConsumer::mark_done, py::arg("message"))
        .def("commit", &StreamConsumer::commit, py::call_guard<py::gil_scoped_release>())
        .def("redeliver_from", &StreamConsumer::redeliver_from, py::arg("message"),
             py::call_guard<py::gil_scoped_release>())
        .def(
            "pause",
            [](StreamConsumer& c, const py::iterable& streams) { c.pause(to_partitions(streams)); },
            py::arg("partitions"))
        .def(
            "resume",
            [](StreamConsumer& c, const py::iterable& streams) {
                c.resume(to_partitions(streams));
            },
            py::arg("partitions"))
        .def_property_readonly("lag",
                               [](const StreamConsumer& c) {
                                   py::dict d;
                                   for (const auto& [tp, lag] : c.lag())
                                       d[py::make_tuple(tp.topic, tp.partition)] = lag;
                                   return d;
                               })
        .def_property_readonly("counters",
                               [](const StreamConsumer& c) { return counters_dict(c.counters()); })
        .def_property_readonly("consumer_name", &StreamConsumer::consumer_name)
        .def("close", &StreamConsumer::close, py::call_guard<py::gil_scoped_release>());

    py::class_<StreamAdmin>(m, "RedisAdmin")
        .def(py::init<const std::string&>(), py::kw_only(), py::arg("broker_url"))
        .def(
            "list_topics",
            [](StreamAdmin& a) {
                std::vector<TopicInfo> out;
                for (auto& s : a.streams()) out.push_back({s, 1, 1});
                return out;
            },
            py::call_guard<py::gil_scoped_release>())
        .def("exists", &StreamAdmin::exists, py::arg("stream"),
             py::call_guard<py::gil_scoped_release>())
        .def("length", &StreamAdmin::length, py::arg("stream"),
             py::call_guard<py::gil_scoped_release>())
        .def(
            "groups",
            [](StreamAdmin& a, const std::string& stream) {
                std::vector<GroupInfo> groups;
                {
                    py::gil_scoped_release release;
                    groups = a.groups(stream);
                }
                py::list out;
                for (const auto& g : groups) {
                    py::dict d;
                    d["name"] = g.name;
                    d["consumers"] = g.consumers;
                    d["pending"] = g.pending;
                    d["lag"] = g.lag < 0 ? py::object(py::none()) : py::object(py::int_(g.lag));
                    d["last_delivered_id"] = g.last_delivered_id;
                    out.append(d);
                }
                return out;
            },
            py::arg("stream"))
        .def(
            "pending",
            [](StreamAdmin& a, const std::string& stream, const std::string& group,
               std::size_t count) {
                std::vector<PendingEntry> entries;
                {
                    py::gil_scoped_release release;
                    entries = a.pending(stream, group, count);
                }
                py::list out;
                for (const auto& e : entries) {
                    py::dict d;
                    d["id"] = e.id;
                    d["consumer"] = e.consumer;
                    d["idle_ms"] = e.idle_ms;
                    d["deliveries"] = e.deliveries;
                    out.append(d);
                }
                return out;
            },
            py::arg("stream"), py::arg("group"), py::arg("count") = 1000)
        .def("range", &StreamAdmin::range, py::arg("stream"), py::arg("start") = "-",
             py::arg("end") = "+", py::arg("count") = 1000, py::arg("reverse") = false,
             py::call_guard<py::gil_scoped_release>())
        .def("remove_entries", &StreamAdmin::remove_entries, py::arg("stream"), py::arg("ids"),
             py::call_guard<py::gil_scoped_release>())
        .def("create_stream", &StreamAdmin::create_stream, py::arg("stream"),
             py::call_guard<py::gil_scoped_release>())
        .def("remove_stream", &StreamAdmin::remove_stream, py::arg("stream"),
             py::call_guard<py::gil_scoped_release>())
        .def("ping", &StreamAdmin::ping, py::call_guard<py::gil_scoped_release>());
}

}  // namespace postroom::python
