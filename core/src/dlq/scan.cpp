#include "scan.hpp"

#include <unistd.h>

#include <chrono>
#include <map>
#include <random>

#include "postroom/error.hpp"
#include "postroom/kafka/consumer.hpp"
#include "postroom/redact.hpp"

namespace postroom::dlq::detail {

using namespace std::chrono;
using Clock = steady_clock;

namespace {

std::string reader_group() {
    static std::mt19937_64 rng{std::random_device{}()};
    return "postroom-dlq-reader-" + std::to_string(::getpid()) + "-" +
           std::to_string(rng() % 1000000);
}

}  // namespace

DecodedBatch::DecodedBatch(MessageBatch&& batch) : records(std::move(batch)) {
    facts.reserve(records.size());
    fingerprints.resize(records.size());
    for (const auto& r : records.views()) facts.push_back(decode_facts(r.headers));
    for (std::size_t i = 0; i < facts.size(); ++i)
        fingerprint_into(fingerprints[i], facts[i].error_type, facts[i].error_message,
                         facts[i].error_stack);
}

std::vector<std::tuple<int32_t, int64_t, int64_t>> extent(Clients& clients,
                                                          const std::string& topic, bool required) {
    auto info = clients.the_admin().describe_topic(topic);
    if (!info) {
        if (required) clients.missing();
        return {};
    }
    std::vector<std::tuple<int32_t, int64_t, int64_t>> out;
    for (int32_t p = 0; p < info->partitions; ++p) {
        auto w = clients.the_admin().watermarks({topic, p});
        if (w.high > w.low) out.emplace_back(p, w.low, w.high);
    }
    return out;
}

void scan_kafka(Clients& clients, const std::string& topic, bool required,
                const std::function<bool(MessageBatch&&)>& visit, const Progress& progress) {
    const auto& config = clients.config;
    auto parts = extent(clients, topic, required);
    if (parts.empty()) return;
    int64_t total = 0;
    std::map<int32_t, int64_t> end;
    std::vector<TopicPartitionOffset> assignment;
    for (auto [p, low, high] : parts) {
        total += high - low;
        end[p] = high;
        assignment.push_back({topic, p, low});
    }
    kafka::ConsumerConfig c;
    c.broker_url = config.broker_url;
    c.group_id = reader_group();
    c.client_id = "postroom-dlq-reader";
    c.track_done = false;
    // A scan reads everything as fast as it can: with librdkafka 2.0.2, a local queue
    // that fills up (queued.min.messages) stalls fetching for hundreds of ms, so let it
    // hold a lot (bounded in bytes). Fetches of half a megabyte per partition: larger
    // ones cost the fetching thread fresh memory (page faults) on every response.
    c.properties = {{"fetch.max.bytes", "104857600"},
                    {"max.partition.fetch.bytes", "524288"},
                    {"queued.min.messages", "1000000"},
                    {"queued.max.messages.kbytes", "131072"}};
    kafka::Consumer consumer(c);
    consumer.assign(assignment);
    int64_t read = 0, next_report = 5000;
    auto quiet_since = Clock::now();
    std::vector<int32_t> finished;
    while (!end.empty()) {
        // Returns with the first records (and what is queued with them).
        auto batch = consumer.poll_views(2048, milliseconds(100));
        if (batch.empty()) {
            if (Clock::now() - quiet_since > config.timeout)
                throw TimeoutError("reading '" + topic + "' from " +
                                   redacted_url(config.broker_url) + ": no records for " +
                                   std::to_string(config.timeout.count()) +
                                   " ms although the watermarks promise more");
            continue;
        }
        quiet_since = Clock::now();
        batch.drop_if([&](const MessageView& m) {
            auto it = end.find(m.partition);
            return it == end.end() || m.offset >= it->second;
        });
        finished.clear();
        for (const auto& m : batch.views())
            if (m.offset + 1 >= end[m.partition]) finished.push_back(m.partition);
        read += static_cast<int64_t>(batch.size());
        if (!batch.empty() && !visit(std::move(batch))) return;
        for (auto p : finished) end.erase(p);
        if (progress && read >= next_report) {
            progress(read, total);
            next_report = read + 5000;
        }
    }
    if (progress) progress(read, total);
}

void scan_redis(Clients& clients, const std::string& stream, bool required,
                const std::function<bool(MessageBatch&&)>& visit, const Progress& progress) {
    auto& streams = *clients.streams;
    if (!streams.exists(stream)) {
        if (required) clients.missing();
        return;
    }
    const int64_t total = streams.length(stream);
    int64_t read = 0;
    std::string start = "-";
    for (;;) {
        auto page = streams.range(stream, start, "+", 5000);
        if (page.empty()) break;
        start = "(" + page.back().id;
        const bool last = page.size() < 5000;
        read += static_cast<int64_t>(page.size());
        if (!visit(MessageBatch(std::move(page)))) return;
        if (progress) progress(read, total);
        if (last) break;
    }
}

void scan(Clients& clients, const std::string& topic, bool required,
          const std::function<bool(MessageBatch&&)>& visit, const Progress& progress) {
    if (clients.redis)
        scan_redis(clients, topic, required, visit, progress);
    else
        scan_kafka(clients, topic, required, visit, progress);
}

void scan_messages(Clients& clients, const std::string& topic, bool required,
                   const std::function<bool(Message&&)>& visit, const Progress& progress) {
    scan(
        clients, topic, required,
        [&](MessageBatch&& batch) {
            for (const auto& v : batch.views())
                if (!visit(to_message(v))) return false;
            return true;
        },
        progress);
}

}  // namespace postroom::dlq::detail
