// Dead-letter tooling, as used by postroom/dlq.py: decoded letters, groups, and the
// dead-letter queue workspace.
#include <pybind11/functional.h>

#include "common.hpp"
#include "postroom/dlq/dead_letters.hpp"
#include "postroom/dlq/queue.hpp"

namespace postroom::python {

using namespace postroom::dlq;

namespace {

// Filter from keyword arguments (times in ms since the epoch; None = any).
Filter to_filter(std::optional<int64_t> since_ms, std::optional<int64_t> until_ms,
                 const py::object& key, const std::string& header_name,
                 const py::object& header_value, const std::string& error_type,
                 const std::string& original_topic, const std::string& fingerprint,
                 const std::string& text, const std::vector<std::string>& ids) {
    Filter f;
    f.since_ms = since_ms.value_or(-1);
    f.until_ms = until_ms.value_or(-1);
    if (!key.is_none()) f.key = to_bytes(key, "key");
    f.header_name = header_name;
    if (!header_value.is_none()) f.header_value = to_bytes(header_value, "header value");
    f.error_type = error_type;
    f.original_topic = original_topic;
    f.fingerprint = fingerprint;
    f.text = text;
    f.ids.insert(ids.begin(), ids.end());
    return f;
}

// A C++ progress callback that calls `fn(done, total)` with the GIL, and cancels (returns
// false) when it returns False or a signal (Ctrl-C) is pending.
std::function<bool(int64_t, int64_t)> progress_of(const py::object& fn) {
    auto held = fn.is_none() ? nullptr : hold(fn.cast<py::function>());
    return [held](int64_t done, int64_t total) {
        py::gil_scoped_acquire gil;
        if (PyErr_CheckSignals() != 0) {
            PyErr_Clear();
            return false;
        }
        if (!held) return true;
        auto r = (*held)(done, total);
        return r.is_none() || r.cast<bool>();
    };
}

py::dict report_dict(const ReplayReport& r) {
    py::dict d;
    d["replay_id"] = r.replay_id;
    d["selected"] = r.selected;
    d["replayed"] = r.replayed;
    d["parked"] = r.parked;
    d["skipped"] = r.skipped;
    d["without_target"] = r.without_target;
    d["truncated"] = r.truncated;
    d["cancelled"] = r.cancelled;
    d["per_target"] = r.per_target;
    d["per_fingerprint"] = r.per_fingerprint;
    return d;
}

}  // namespace

void bind_dlq(py::module_& m) {
    py::class_<DeadLetter>(m, "DeadLetter", "One dead letter, decoded from its headers.")
        .def_readonly("record", &DeadLetter::record)
        .def_property_readonly(
            "convention", [](const DeadLetter& d) { return std::string(to_string(d.convention)); })
        .def_readonly("error_type", &DeadLetter::error_type)
        .def_readonly("error_message", &DeadLetter::error_message)
        .def_readonly("error_stack", &DeadLetter::error_stack)
        .def_readonly("reason", &DeadLetter::reason)
        .def_readonly("original_topic", &DeadLetter::original_topic)
        .def_readonly("original_partition", &DeadLetter::original_partition)
        .def_readonly("original_offset", &DeadLetter::original_offset)
        .def_readonly("group", &DeadLetter::group)
        .def_readonly("attempts", &DeadLetter::attempts)
        .def_readonly("failed_at", &DeadLetter::failed_at)
        .def_readonly("replay_count", &DeadLetter::replay_count)
        .def_readonly("replayed_from", &DeadLetter::replayed_from)
        .def_readonly("replay_id", &DeadLetter::replay_id)
        .def_readonly("value_truncated", &DeadLetter::value_truncated)
        .def_readonly("value_length", &DeadLetter::value_length)
        .def_readonly("fingerprint", &DeadLetter::fingerprint)
        .def_property_readonly("id", &DeadLetter::id)
        .def("__repr__", [](const DeadLetter& d) {
            return "DeadLetter(id='" + d.id() + "', error_type='" + d.error_type +
                   "', original_topic='" + d.original_topic + "')";
        });
    m.def(
        "decode_dead_letter", [](const Message& record) { return decode(record); },
        py::arg("record"), "Decodes any known dead-letter header convention.");
    m.def("dead_letter_fingerprint", &fingerprint, py::arg("error_type"), py::arg("message"),
          py::arg("stack"));
    m.def("normalise_error_message", &normalise_message, py::arg("message"));

    py::class_<Group>(m, "DeadLetterGroup", "Dead letters with one error fingerprint.")
        .def_readonly("fingerprint", &Group::fingerprint)
        .def_readonly("error_type", &Group::error_type)
        .def_readonly("message", &Group::message)
        .def_readonly("top_frame", &Group::top_frame)
        .def_readonly("count", &Group::count)
        .def_readonly("first_seen_ms", &Group::first_seen_ms)
        .def_readonly("last_seen_ms", &Group::last_seen_ms)
        .def_readonly("original_topics", &Group::original_topics)
        .def_readonly("groups", &Group::groups)
        .def_property_readonly("conventions",
                               [](const Group& g) {
                                   std::vector<std::string> out;
                                   for (auto c : g.conventions) out.emplace_back(to_string(c));
                                   return out;
                               })
        .def_readonly("sample_id", &Group::sample_id);

    py::class_<DeadLetterQueue>(m, "DeadLetterQueue")
        .def(py::init([](const std::string& broker_url, const std::string& topic, double timeout) {
                 return std::make_unique<DeadLetterQueue>(
                     QueueConfig{broker_url, topic, to_ms(timeout)});
             }),
             py::kw_only(), py::arg("broker_url"), py::arg("topic"), py::arg("timeout") = 15.0)
        .def("size", &DeadLetterQueue::size, py::call_guard<py::gil_scoped_release>())
        .def(
            "find",
            [](DeadLetterQueue& q, std::size_t limit, std::size_t skip, bool newest_first,
               bool include_settled, std::optional<int64_t> since_ms,
               std::optional<int64_t> until_ms, const py::object& key,
               const std::string& header_name, const py::object& header_value,
               const std::string& error_type, const std::string& original_topic,
               const std::string& fingerprint, const std::string& text,
               const std::vector<std::string>& ids) {
                auto f = to_filter(since_ms, until_ms, key, header_name, header_value, error_type,
                                   original_topic, fingerprint, text, ids);
                py::gil_scoped_release release;
                return q.list(f, limit, skip, newest_first, include_settled);
            },
            py::kw_only(), py::arg("limit") = 50, py::arg("skip") = 0,
            py::arg("newest_first") = true, py::arg("include_settled") = false,
            py::arg("since_ms") = py::none(), py::arg("until_ms") = py::none(),
            py::arg("key") = py::none(), py::arg("header_name") = "",
            py::arg("header_value") = py::none(), py::arg("error_type") = "",
            py::arg("original_topic") = "", py::arg("fingerprint") = "", py::arg("text") = "",
            py::arg("ids") = std::vector<std::string>{})
        .def("show", &DeadLetterQueue::show, py::arg("id"),
             py::call_guard<py::gil_scoped_release>())
        .def(
            "stats",
            [](DeadLetterQueue& q, bool include_settled, std::optional<int64_t> since_ms,
               std::optional<int64_t> until_ms, const py::object& key,
               const std::string& header_name, const py::object& header_value,
               const std::string& error_type, const std::string& original_topic,
               const std::string& fingerprint, const std::string& text,
               const py::object& progress) {
                auto f = to_filter(since_ms, until_ms, key, header_name, header_value, error_type,
                                   original_topic, fingerprint, text, {});
                auto report = progress_of(progress);
                Stats stats;
                {
                    py::gil_scoped_release release;
                    stats = q.stats(f, include_settled,
                                    [&](int64_t done, int64_t total) { report(done, total); });
                }
                return py::make_tuple(stats.total(), stats.groups());
            },
            py::kw_only(), py::arg("include_settled") = false, py::arg("since_ms") = py::none(),
            py::arg("until_ms") = py::none(), py::arg("key") = py::none(),
            py::arg("header_name") = "", py::arg("header_value") = py::none(),
            py::arg("error_type") = "", py::arg("original_topic") = "", py::arg("fingerprint") = "",
            py::arg("text") = "", py::arg("progress") = py::none())
        .def(
            "replay",
            [](DeadLetterQueue& q, const std::string& to, double rate, std::size_t batch_size,
               bool dry_run, bool again, int max_replays, const std::string& parking_topic,
               bool keep_failure_headers, std::optional<int64_t> since_ms,
               std::optional<int64_t> until_ms, const py::object& key,
               const std::string& header_name, const py::object& header_value,
               const std::string& error_type, const std::string& original_topic,
               const std::string& fingerprint, const std::string& text,
               const std::vector<std::string>& ids, const py::object& progress) {
                ReplayOptions o;
                o.filter = to_filter(since_ms, until_ms, key, header_name, header_value, error_type,
                                     original_topic, fingerprint, text, ids);
                o.to = to;
                o.rate_per_s = rate;
                o.batch_size = batch_size;
                o.dry_run = dry_run;
                o.again = again;
                o.max_replays = max_replays;
                o.parking_topic = parking_topic;
                o.keep_failure_headers = keep_failure_headers;
                o.progress = progress_of(progress);
                ReplayReport r;
                {
                    py::gil_scoped_release release;
                    r = q.replay(o);
                }
                return report_dict(r);
            },
            py::kw_only(), py::arg("to") = "", py::arg("rate") = 0.0, py::arg("batch_size") = 500,
            py::arg("dry_run") = false, py::arg("again") = false, py::arg("max_replays") = 3,
            py::arg("parking_topic") = "", py::arg("keep_failure_headers") = false,
            py::arg("since_ms") = py::none(), py::arg("until_ms") = py::none(),
            py::arg("key") = py::none(), py::arg("header_name") = "",
            py::arg("header_value") = py::none(), py::arg("error_type") = "",
            py::arg("original_topic") = "", py::arg("fingerprint") = "", py::arg("text") = "",
            py::arg("ids") = std::vector<std::string>{}, py::arg("progress") = py::none())
        .def("ledger",
             [](DeadLetterQueue& q) {
                 std::map<std::string, LedgerEntry> entries;
                 {
                     py::gil_scoped_release release;
                     entries = q.ledger();
                 }
                 py::dict out;
                 for (const auto& [id, e] : entries)
                     out[py::str(id)] = py::make_tuple(e.state, e.at_ms, e.detail);
                 return out;
             })
        .def("resolve", &DeadLetterQueue::resolve, py::arg("ids"), py::arg("note") = "",
             py::call_guard<py::gil_scoped_release>())
        .def("truncate", &DeadLetterQueue::truncate, py::arg("partition"), py::arg("before_offset"),
             py::call_guard<py::gil_scoped_release>());
}

}  // namespace postroom::python
