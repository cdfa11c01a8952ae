// The idempotent consumer runtime and the idempotency stores, as used by
// postroom/processor.py and postroom/stores.py.
#include <pybind11/functional.h>

#include <utility>

#include "common.hpp"
#include "postroom/error.hpp"
#include "postroom/runtime/processor.hpp"
#include "postroom/stores/store.hpp"

namespace postroom::python {

using namespace postroom::runtime;
using namespace postroom::stores;
using namespace std::chrono;

namespace {

SqlValue to_sql(const py::handle& v) {
    if (v.is_none()) return std::monostate{};
    if (PyBool_Check(v.ptr())) return int64_t{v.cast<bool>() ? 1 : 0};
    if (PyLong_Check(v.ptr())) return v.cast<int64_t>();
    if (PyFloat_Check(v.ptr())) return v.cast<double>();
    if (PyUnicode_Check(v.ptr())) return v.cast<std::string>();
    if (PyBytes_Check(v.ptr()) || PyByteArray_Check(v.ptr()) || PyMemoryView_Check(v.ptr()))
        return Blob{*to_bytes(v, "SQL parameter")};
    throw py::type_error("SQL parameters must be None, int, float, str or bytes, not " +
                         std::string(py::str(py::type::of(v).attr("__name__"))));
}

py::object from_sql(const SqlValue& v) {
    return std::visit(
        [](const auto& x) -> py::object {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::monostate>)
                return py::none();
            else if constexpr (std::is_same_v<T, Blob>)
                return py::bytes(x.bytes);
            else
                return py::cast(x);
        },
        v);
}

// What a Python handler (Ctx = HandlerContext) or batch handler (BatchHandlerContext) sees
// as `context`; usable only during its call.
template <typename Ctx>
struct PyContext {
    Ctx* ctx;
    void check() const {
        if (!ctx) throw UsageError("the handler context is only valid while the handler runs");
    }
    stores::Transaction* transaction() const {
        check();
        return ctx->transaction;
    }
};
using PyHandlerContext = PyContext<HandlerContext>;
using PyBatchContext = PyContext<BatchHandlerContext>;

// context.execute(sql, params): SQL in the store's transaction; the rows.
py::list execute_in(stores::Transaction* tx, const std::string& sql, const py::iterable& params) {
    std::vector<SqlValue> values;
    for (auto p : params) values.push_back(to_sql(p));
    SqlResult result;
    {
        py::gil_scoped_release release;
        result = tx->execute(sql, values);
    }
    py::list rows;
    for (const auto& row : result.rows) {
        py::tuple t(row.size());
        for (std::size_t i = 0; i < row.size(); ++i) t[i] = from_sql(row[i]);
        rows.append(t);
    }
    return rows;
}

// context.redis_command(*args): queued into the store's MULTI/EXEC.
void enqueue_in(stores::Transaction* tx, const py::args& args) {
    std::vector<std::string> command;
    for (auto a : args) {
        if (PyLong_Check(a.ptr()) || PyFloat_Check(a.ptr()))
            command.push_back(py::str(a).cast<std::string>());
        else if (auto bytes = to_bytes(a, "a Redis command argument"))
            command.push_back(std::move(*bytes));
        else
            throw py::type_error("a Redis command argument cannot be None");
    }
    tx->enqueue_command(std::move(command));
}

constexpr const char* execute_doc =
    "Runs SQL in the store's transaction (SQL stores), so the handler's writes and the dedupe "
    "marks commit or roll back together. Returns the rows.";
constexpr const char* redis_command_doc =
    "Queues a Redis command (Redis store) to run when the events commit, in the same "
    "MULTI/EXEC as the dedupe marks: the effect and the marks apply together, once. Arguments "
    "are str, bytes or numbers. Returns nothing: the command runs later.";

// Shared between a Processor and its Python-side callbacks.
struct PyProcessorState {
    Processor* processor = nullptr;
    py::object pending_error;  // an exception raised by signal handlers while waiting
    ~PyProcessorState() {
        py::gil_scoped_acquire gil;
        pending_error = py::object();
    }
};

// The Python-facing processor: the core Processor plus the state its callbacks share.
struct PyProcessor {
    std::shared_ptr<PyProcessorState> state;
    std::unique_ptr<Processor> processor;
    PyProcessor() = default;
    PyProcessor(const PyProcessor&) = delete;
    PyProcessor& operator=(const PyProcessor&) = delete;
    // Closing joins the lane threads, whose handlers need the GIL: let go of it meanwhile.
    ~PyProcessor() {
        if (!processor) return;
        py::gil_scoped_release release;
        processor.reset();
    }
};

std::size_t run_once(PyProcessor& self, double timeout) {
    std::size_t finished;
    {
        py::gil_scoped_release release;
        finished = self.processor->run_once(to_ms(timeout));
    }
    if (self.state->pending_error) {
        auto error = std::exchange(self.state->pending_error, py::object());
        PyErr_SetObject(py::type::of(error).ptr(), error.ptr());
        throw py::error_already_set();
    }
    return finished;
}

std::string format_traceback(const py::error_already_set& e) {
    try {
        auto lines = py::module_::import("traceback")
                         .attr("format_exception")(e.type(), e.value(), e.trace());
        return py::str("").attr("join")(lines).cast<std::string>();
    } catch (...) {
        return {};
    }
}

std::string qualified_name(const py::handle& type) {
    std::string module = py::str(type.attr("__module__"));
    std::string name = py::str(type.attr("__qualname__"));
    return module == "builtins" ? name : module + "." + name;
}

// A Python handler's exception as the runtime records it. KeyboardInterrupt and SystemExit
// also stop the processor (raised again once run_once returns). postroom errors that say
// retrying cannot help (codec, usage, configuration, NonRetryableError) skip the retries, as
// do the retry policy's non_retryable exception types (`permanent`, a tuple).
HandlerFailure handler_failure(py::error_already_set& err, PyProcessorState& state,
                               const py::object& permanent) {
    if (err.matches(PyExc_KeyboardInterrupt) || err.matches(PyExc_SystemExit)) {
        state.pending_error = err.value();
        if (state.processor) state.processor->stop();
    }
    auto errors = py::module_::import("postroom.errors");
    const bool permanent_postroom_error =
        py::isinstance(err.value(), errors.attr("PostroomError")) &&
        py::getattr(err.value(), "retriable", py::none()).is(py::bool_(false));
    const bool retryable =
        !permanent_postroom_error &&
        !(py::len(permanent) > 0 && PyObject_IsInstance(err.value().ptr(), permanent.ptr()) == 1);
    return HandlerFailure(qualified_name(err.type()), py::str(err.value()).cast<std::string>(),
                          format_traceback(err), retryable);
}

// Calls a Python handler with `argument` and a context that is valid only during the call;
// its exception becomes the runtime's HandlerFailure.
template <typename PyContext, typename CoreContext>
void call_python(const py::object& handler, const py::object& argument, CoreContext& ctx,
                 PyProcessorState& state, const py::object& permanent) {
    auto context = std::make_shared<PyContext>(PyContext{&ctx});
    try {
        handler(argument, context);
        context->ctx = nullptr;
    } catch (py::error_already_set& err) {
        context->ctx = nullptr;
        throw handler_failure(err, state, permanent);
    }
}

// What both handler contexts offer: the attempt, and SQL or Redis commands in the store's
// transaction.
template <typename Context>
void bind_store_calls(py::class_<Context, std::shared_ptr<Context>>& cls) {
    cls.def_property_readonly("attempt",
                              [](const Context& c) {
                                  c.check();
                                  return c.ctx->attempt;
                              })
        .def(
            "execute",
            [](const Context& c, const std::string& sql, const py::iterable& params) {
                return execute_in(c.transaction(), sql, params);
            },
            py::arg("sql"), py::arg("params") = py::tuple(), execute_doc)
        .def(
            "redis_command",
            [](const Context& c, const py::args& args) { enqueue_in(c.transaction(), args); },
            redis_command_doc);
}

py::dict counters_dict(const Counters& c) {
    py::dict d;
    d["processed"] = c.processed;
    d["duplicates"] = c.duplicates;
    d["retried"] = c.retried;
    d["failed_attempts"] = c.failed_attempts;
    d["dead_lettered"] = c.dead_lettered;
    d["retry_topic_sends"] = c.retry_topic_sends;
    d["in_flight"] = c.in_flight;
    d["blocked_waits"] = c.blocked_waits;
    d["flood_pauses"] = c.flood_pauses;
    d["lane_pauses"] = c.lane_pauses;
    d["purged_marks"] = c.purged_marks;
    py::dict lag;
    for (const auto& [tp, n] : c.lag) lag[py::make_tuple(tp.topic, tp.partition)] = n;
    d["lag"] = lag;
    return d;
}

}  // namespace

void bind_runtime(py::module_& m) {
    py::class_<IdempotencyStore, std::shared_ptr<IdempotencyStore>>(m, "IdempotencyStore")
        .def("contains", &IdempotencyStore::contains, py::arg("scope"), py::arg("key"),
             py::call_guard<py::gil_scoped_release>())
        .def(
            "purge_older_than",
            [](IdempotencyStore& s, double seconds) {
                py::gil_scoped_release release;
                return s.purge_older_than(std::chrono::seconds(static_cast<int64_t>(seconds)));
            },
            py::arg("seconds"))
        .def_property_readonly("kind", &IdempotencyStore::kind);

    py::class_<MemoryStore, IdempotencyStore, std::shared_ptr<MemoryStore>>(m, "MemoryStore")
        .def(py::init<std::size_t>(), py::arg("capacity") = 1'000'000)
        .def("__len__", &MemoryStore::size);

    py::class_<SqliteStore, IdempotencyStore, std::shared_ptr<SqliteStore>>(m, "SqliteStore")
        .def(py::init([](const std::string& path, const std::string& table, double busy_timeout) {
                 py::gil_scoped_release release;
                 return std::make_shared<SqliteStore>(path, table, to_ms(busy_timeout));
             }),
             py::arg("path"), py::arg("table") = "postroom_processed",
             py::arg("busy_timeout") = 30.0)
        .def_property_readonly("path", &SqliteStore::path);

    py::class_<PostgresStore, IdempotencyStore, std::shared_ptr<PostgresStore>>(m, "PostgresStore")
        .def(py::init([](const std::string& url, const std::string& table, std::size_t pool_size) {
                 py::gil_scoped_release release;
                 return std::make_shared<PostgresStore>(url, table, pool_size);
             }),
             py::arg("url"), py::arg("table") = "postroom_processed", py::arg("pool_size") = 4);

    py::class_<RedisStore, IdempotencyStore, std::shared_ptr<RedisStore>>(m, "RedisStore")
        .def(py::init([](const std::string& url, double retention, const std::string& prefix,
                         double lease) {
                 py::gil_scoped_release release;
                 return std::make_shared<RedisStore>(
                     url, std::chrono::seconds(static_cast<int64_t>(retention)), prefix,
                     to_ms(lease));
             }),
             py::arg("url"), py::arg("retention") = 7 * 24 * 3600.0,
             py::arg("prefix") = "postroom:processed:", py::arg("lease") = 60.0);

    m.def(
        "open_store",
        [](const std::string& url) {
            py::gil_scoped_release release;
            return open_store(url);
        },
        py::arg("url"));
    m.def("is_valid_table_name", &is_valid_table_name, py::arg("name"));

    py::class_<PyHandlerContext, std::shared_ptr<PyHandlerContext>> handler_context(
        m, "HandlerContext",
        "What a handler gets besides the event; valid only while the handler runs.");
    handler_context.def_property_readonly("message", [](const PyHandlerContext& c) {
        c.check();
        return c.ctx->message;
    });
    bind_store_calls(handler_context);

    py::class_<PyBatchContext, std::shared_ptr<PyBatchContext>> batch_context(
        m, "BatchContext",
        "What a batch handler gets besides the events; valid only while the handler runs.");
    batch_context.def_property_readonly("messages", [](const PyBatchContext& c) {
        c.check();
        std::vector<Message> out;
        out.reserve(c.ctx->messages.size());
        for (const auto* msg : c.ctx->messages) out.push_back(*msg);
        return out;
    });
    bind_store_calls(batch_context);

    py::class_<PyProcessor>(m, "Processor")
        .def(py::init([](const std::string& name, const std::string& broker_url,
                         const std::string& group_id, const std::vector<std::string>& topics,
                         const py::function& handler, bool batch,
                         std::shared_ptr<IdempotencyStore> store,
                         const std::string& dead_letter_topic, int max_attempts,
                         double initial_delay, double multiplier, double max_delay, double jitter,
                         const py::tuple& non_retryable, std::size_t max_payload_bytes,
                         const std::string& key_header, const py::object& key_function,
                         std::size_t batch_size, std::size_t concurrency, double commit_interval,
                         double blocked_backoff_max, double flood_max_failure_ratio,
                         std::size_t flood_window, std::size_t flood_min_events, double flood_pause,
                         double retention, double purge_interval,
                         const std::vector<double>& retry_topic_delays,
                         const py::dict& consumer_properties, const py::dict& producer_properties) {
                 ProcessorConfig c;
                 c.name = name;
                 c.broker_url = broker_url;
                 c.group_id = group_id;
                 c.topics = topics;
                 c.store = std::move(store);
                 c.dead_letter_topic = dead_letter_topic;
                 c.retry.max_attempts = max_attempts;
                 c.retry.initial_delay = to_ms(initial_delay);
                 c.retry.multiplier = multiplier;
                 c.retry.max_delay = to_ms(max_delay);
                 c.retry.jitter = jitter;
                 c.max_payload_bytes = max_payload_bytes;
                 c.key_header = key_header;
                 c.batch_size = batch_size;
                 c.concurrency = concurrency;
                 c.commit_interval = to_ms(commit_interval);
                 c.blocked_backoff_max = to_ms(blocked_backoff_max);
                 c.flood_guard.max_failure_ratio = flood_max_failure_ratio;
                 c.flood_guard.window = flood_window;
                 c.flood_guard.min_events = flood_min_events;
                 c.flood_guard.pause = to_ms(flood_pause);
                 c.retention = std::chrono::seconds(static_cast<int64_t>(retention));
                 c.purge_interval = std::chrono::seconds(static_cast<int64_t>(purge_interval));
                 for (double d : retry_topic_delays) c.retry_topic_delays.push_back(to_ms(d));
                 c.consumer_properties = to_properties(consumer_properties);
                 c.producer_properties = to_properties(producer_properties);

                 auto state = std::make_shared<PyProcessorState>();
                 auto py_handler = hold(handler);
                 auto permanent = hold(py::object(non_retryable));
                 if (!key_function.is_none()) {
                     auto fn = hold(key_function);
                     c.key_function = [fn](const Event& e, const Message& msg) {
                         CallbackGil gil;
                         try {
                             return py::str((*fn)(e, msg)).cast<std::string>();
                         } catch (py::error_already_set& err) {
                             throw CodecError(
                                 "key", "the key function failed: " + std::string(err.what()));
                         }
                     };
                 }
                 c.on_wait = [state] {
                     CallbackGil gil;
                     if (PyErr_CheckSignals() != 0) {
                         // e.g. KeyboardInterrupt: stop, and raise it once run_once returns.
                         auto error = py::error_already_set();
                         state->pending_error = error.value();
                         if (state->processor) state->processor->stop();
                     }
                 };
                 auto self = std::make_unique<PyProcessor>();
                 self->state = state;
                 auto start = [&](auto h) {
                     py::gil_scoped_release release;
                     self->processor = std::make_unique<Processor>(std::move(c), std::move(h));
                 };
                 if (batch)
                     start(BatchHandler(
                         [state, py_handler, permanent](const std::vector<const Event*>& events,
                                                        BatchHandlerContext& ctx) {
                             CallbackGil gil;
                             py::list py_events;
                             for (const auto* e : events) py_events.append(*e);
                             call_python<PyBatchContext>(*py_handler, py_events, ctx, *state,
                                                         *permanent);
                         }));
                 else
                     start(Handler(
                         [state, py_handler, permanent](const Event& e, HandlerContext& ctx) {
                             CallbackGil gil;
                             call_python<PyHandlerContext>(*py_handler, py::cast(e), ctx, *state,
                                                           *permanent);
                         }));
                 state->processor = self->processor.get();
                 return self;
             }),
             py::kw_only(), py::arg("name"), py::arg("broker_url"), py::arg("group_id"),
             py::arg("topics"), py::arg("handler"), py::arg("batch"), py::arg("store"),
             py::arg("dead_letter_topic"), py::arg("max_attempts"), py::arg("initial_delay"),
             py::arg("multiplier"), py::arg("max_delay"), py::arg("jitter"),
             py::arg("non_retryable"), py::arg("max_payload_bytes"), py::arg("key_header"),
             py::arg("key_function"), py::arg("batch_size"), py::arg("concurrency"),
             py::arg("commit_interval"), py::arg("blocked_backoff_max"),
             py::arg("flood_max_failure_ratio"), py::arg("flood_window"),
             py::arg("flood_min_events"), py::arg("flood_pause"), py::arg("retention"),
             py::arg("purge_interval"), py::arg("retry_topic_delays"),
             py::arg("consumer_properties"), py::arg("producer_properties"))
        .def("run_once", &run_once, py::arg("timeout") = 0.1)
        .def("stop", [](PyProcessor& p) { p.processor->stop(); })
        .def("throw_if_failed", [](const PyProcessor& p) { p.processor->throw_if_failed(); })
        .def_property_readonly("stopping",
                               [](const PyProcessor& p) { return p.processor->stopping(); })
        .def("counters",
             [](const PyProcessor& p) {
                 Counters c;
                 {
                     py::gil_scoped_release release;
                     c = p.processor->counters();
                 }
                 return counters_dict(c);
             })
        .def("close",
             [](PyProcessor& p) {
                 py::gil_scoped_release release;
                 p.processor->close();
             })
        .def_property_readonly(
            "dead_letter_topic",
            [](const PyProcessor& p) { return p.processor->config().dead_letter_topic; })
        .def_property_readonly("group_id",
                               [](const PyProcessor& p) { return p.processor->config().group_id; });
}

}  // namespace postroom::python
