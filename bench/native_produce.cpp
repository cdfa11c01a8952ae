// postroom_bench_produce: the native ceiling of postroom's produce path.
//
// Produces --messages messages of --size bytes to an existing topic through
// postroom::kafka::Producer::produce_batch in chunks of --chunk messages, keeping at most
// --inflight chunks queued (1 = Producer::send_batch, one chunk at a time), and measures from
// the first produce_batch call until every delivery report arrived. All messages are built
// before the clock starts: this is the core's cost without any conversion from Python.
// A warm-up (--warmup messages, same path, same topic) runs first.
//
// Prints one JSON line with the result; exit 0 when every message was delivered, 1 when a
// message failed or something broke, 2 on bad arguments.
//
//   postroom_bench_produce --broker kafka://127.0.0.1:19092 --topic T --messages 300000
//                          --size 100 --chunk 10000 [--inflight 4] [--headers]
//                          [--warmup 20000] [--linger-ms 5] [--property k=v ...]

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "postroom/error.hpp"
#include "postroom/kafka/producer.hpp"

namespace {

using namespace std::chrono;
using postroom::BatchDelivery;
using postroom::OutgoingMessage;
using postroom::kafka::Producer;
using postroom::kafka::ProducerConfig;

struct Options {
    std::string broker;
    std::string topic;
    std::size_t messages = 300'000;
    std::size_t size = 100;
    std::size_t chunk = 10'000;
    std::size_t inflight = 4;
    std::size_t warmup = 20'000;
    int64_t linger_ms = 5;
    bool headers = false;
    std::map<std::string, std::string> properties;
};

[[noreturn]] void usage(const std::string& problem) {
    std::fprintf(stderr,
                 "postroom_bench_produce: %s\n"
                 "usage: postroom_bench_produce --broker URL --topic T [--messages N] [--size B]\n"
                 "       [--chunk C] [--inflight K] [--headers] [--warmup W] [--linger-ms L]\n"
                 "       [--property key=value ...]\n",
                 problem.c_str());
    std::exit(2);
}

std::size_t to_count(std::string_view flag, const std::string& text, std::size_t min) {
    try {
        std::size_t used = 0;
        auto v = std::stoull(text, &used);
        if (used != text.size() || v < min) throw std::invalid_argument(text);
        return static_cast<std::size_t>(v);
    } catch (const std::exception&) {
        usage(std::string(flag) + " expects an integer >= " + std::to_string(min) + ", not '" +
              text + "'");
    }
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) usage(std::string(a) + " needs a value");
            return argv[++i];
        };
        if (a == "--broker")
            o.broker = next();
        else if (a == "--topic")
            o.topic = next();
        else if (a == "--messages")
            o.messages = to_count(a, next(), 1);
        else if (a == "--size")
            o.size = to_count(a, next(), 0);
        else if (a == "--chunk")
            o.chunk = to_count(a, next(), 1);
        else if (a == "--inflight")
            o.inflight = to_count(a, next(), 1);
        else if (a == "--warmup")
            o.warmup = to_count(a, next(), 0);
        else if (a == "--linger-ms")
            o.linger_ms = static_cast<int64_t>(to_count(a, next(), 0));
        else if (a == "--headers")
            o.headers = true;
        else if (a == "--property") {
            auto kv = next();
            auto eq = kv.find('=');
            if (eq == std::string::npos || eq == 0)
                usage("--property expects key=value, not '" + kv + "'");
            o.properties[kv.substr(0, eq)] = kv.substr(eq + 1);
        } else if (a == "-h" || a == "--help")
            usage("help");
        else
            usage("unknown argument '" + std::string(a) + "'");
    }
    if (o.broker.empty()) usage("--broker is required");
    if (o.topic.empty()) usage("--topic is required");
    return o;
}

// `count` messages in chunks of `chunk`, values of `size` bytes (distinct per message).
std::deque<std::vector<OutgoingMessage>> build(const Options& o, std::size_t count) {
    std::deque<std::vector<OutgoingMessage>> chunks;
    const postroom::Headers headers =
        o.headers ? postroom::Headers{{"h1", std::string("v1")}, {"h2", std::string("v2")}}
                  : postroom::Headers{};
    std::string value(o.size, 'x');
    for (std::size_t i = 0; i < count; ++i) {
        if (i % o.chunk == 0) {
            chunks.emplace_back();
            chunks.back().reserve(std::min(o.chunk, count - i));
        }
        // A little variation so that no two values are identical.
        for (std::size_t k = 0, n = i; k < value.size() && k < 8; ++k, n /= 10)
            value[k] = static_cast<char>('0' + n % 10);
        OutgoingMessage m;
        m.topic = o.topic;
        m.value = value;
        m.headers = headers;
        chunks.back().push_back(std::move(m));
    }
    return chunks;
}

struct Outcome {
    std::size_t failed = 0;
    std::string first_error;
    double enqueue_seconds = 0;  // inside produce_batch (queueing into librdkafka)
};

void account(const BatchDelivery& b, Outcome& out) {
    if (b.failed() == 0) return;
    out.failed += b.failed();
    if (out.first_error.empty())
        for (const auto& r : b.reports())
            if (!r.ok()) {
                out.first_error = r.error_message();
                break;
            }
}

void wait_done(Producer& p, const BatchDelivery& b) {
    // Every message is reported within delivery_timeout, so this ends.
    while (!p.wait(b, seconds(1))) {
    }
}

// Sends every chunk, at most `inflight` queued at once; returns when all were reported.
Outcome run(Producer& p, std::deque<std::vector<OutgoingMessage>> chunks, std::size_t inflight) {
    Outcome out;
    if (inflight <= 1) {
        for (auto& c : chunks) account(*p.send_batch(std::move(c)), out);
        return out;
    }
    std::deque<std::shared_ptr<BatchDelivery>> queued;
    for (auto& c : chunks) {
        while (queued.size() >= inflight) {
            wait_done(p, *queued.front());
            account(*queued.front(), out);
            queued.pop_front();
        }
        const auto t0 = steady_clock::now();
        queued.push_back(p.produce_batch(std::move(c)));
        out.enqueue_seconds += duration<double>(steady_clock::now() - t0).count();
    }
    for (auto& b : queued) {
        wait_done(p, *b);
        account(*b, out);
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    nlohmann::json result = {
        {"tool", "postroom_bench_produce"},
        {"librdkafka", rd_kafka_version_str()},
        {"topic", o.topic},
        {"messages", o.messages},
        {"size", o.size},
        {"chunk", o.chunk},
        {"inflight", o.inflight},
        {"headers", o.headers},
        {"warmup", o.warmup},
        {"linger_ms", o.linger_ms},
        {"properties", o.properties},
    };
    int rc = 0;
    try {
        ProducerConfig c;
        c.broker_url = o.broker;
        c.client_id = "postroom-bench-native";
        c.linger = milliseconds(o.linger_ms);
        c.properties = o.properties;
        Producer p(std::move(c));

        if (o.warmup > 0) {
            auto w = run(p, build(o, o.warmup), o.inflight);
            if (w.failed)
                throw std::runtime_error("warm-up: " + std::to_string(w.failed) +
                                         " messages failed: " + w.first_error);
        }
        auto chunks = build(o, o.messages);

        const auto start = steady_clock::now();
        const auto out = run(p, std::move(chunks), o.inflight);
        const double elapsed = duration<double>(steady_clock::now() - start).count();

        result["seconds"] = elapsed;
        result["msgs_per_sec"] = static_cast<double>(o.messages) / elapsed;
        result["failed"] = out.failed;
        if (o.inflight > 1)
            result["enqueue_ns_per_msg"] =
                out.enqueue_seconds * 1e9 / static_cast<double>(o.messages);
        result["idempotence_enabled"] = p.idempotence_enabled();
        if (out.failed) {
            result["error"] =
                std::to_string(out.failed) + " messages failed; first: " + out.first_error;
            rc = 1;
        }
        p.close();
    } catch (const std::exception& e) {
        result["error"] = e.what();
        rc = 1;
    }
    std::printf("%s\n", result.dump().c_str());
    return rc;
}
