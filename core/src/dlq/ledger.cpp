#include "ledger.hpp"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "../redis/connection.hpp"
#include "clients.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/admin.hpp"
#include "postroom/kafka/producer.hpp"
#include "scan.hpp"

namespace postroom::dlq::detail {

namespace {

// `s` as a JSON string. Letter ids and Kafka topic names are plain (letters, digits and
// . _ - :) and are written as they are; anything else goes through the JSON library.
void append_json_string(std::string& out, std::string_view s) {
    const bool plain = std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-' || c == ':';
    });
    if (!plain) {
        out += nlohmann::json(std::string(s)).dump();
        return;
    }
    out += '"';
    out += s;
    out += '"';
}

// "to": one destination for all, or one per run (or, in records of earlier versions, one
// per letter); "" when it names none for the `i`th.
std::string destination(const nlohmann::json& to, std::size_t i) {
    return to.is_string()                   ? to.get<std::string>()
           : to.is_array() && i < to.size() ? to[i].get<std::string>()
                                            : "";
}

// Written by hand: a replay writes one such record per acknowledged flight, of up to 1,000
// runs.
std::string encode_runs(const LedgerRecord& record) {
    const auto& runs = record.runs;
    std::string json = R"({"state":)";
    append_json_string(json, record.state);
    json += R"(,"at":)" + std::to_string(record.at_ms) + R"(,"ranges":[)";
    for (std::size_t k = 0; k < runs.size(); ++k) {
        if (k > 0) json += ',';
        json += '[';
        append_json_string(json, runs[k].partition);
        json += ',' + std::to_string(runs[k].first) + ',' + std::to_string(runs[k].last) + ']';
    }
    json += R"(],"to":)";
    if (runs.empty() || std::all_of(runs.begin(), runs.end(),
                                    [&](const LedgerRun& r) { return r.to == runs[0].to; })) {
        append_json_string(json, runs.empty() ? std::string_view() : runs[0].to);
    } else {
        json += '[';
        for (std::size_t k = 0; k < runs.size(); ++k) {
            if (k > 0) json += ',';
            append_json_string(json, runs[k].to);
        }
        json += ']';
    }
    json += R"(,"replay":)";
    append_json_string(json, record.replay_id);
    json += '}';
    return json;
}

}  // namespace

int64_t epoch_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string encode_ledger_entry(const LedgerEntry& e) {
    return nlohmann::json{{"state", e.state}, {"at", e.at_ms}, {"detail", e.detail}}.dump();
}

std::string encode_ledger_record(const LedgerRecord& record) {
    switch (record.shape) {
        case LedgerRecord::Shape::runs: return encode_runs(record);
        case LedgerRecord::Shape::ids: {
            auto ids = nlohmann::json::array(), to = nlohmann::json::array();
            for (const auto& [id, where] : record.ids) {
                ids.push_back(id);
                to.push_back(where);
            }
            return nlohmann::json{
                {"state", record.state}, {"at", record.at_ms}, {"ids", ids}, {"to", to}}
                .dump();
        }
        case LedgerRecord::Shape::letter: break;
    }
    return encode_ledger_entry({record.state, record.at_ms, record.detail});
}

std::string ledger_record_key(std::string_view first_id, int64_t at_ms) {
    return "replayed:" + std::string(first_id) + '@' + std::to_string(at_ms);
}

std::optional<LedgerRecord> decode_ledger_record(std::string_view json) {
    LedgerRecord record;
    try {
        const auto j = nlohmann::json::parse(json);
        record.state = j.value("state", "");
        record.at_ms = j.value("at", int64_t{0});
        if (j.contains("ranges")) {
            // Runs of offsets: ["<topic>:<partition>", first, last].
            const auto& ranges = j.at("ranges");
            const auto& to = j.at("to");
            if (auto it = j.find("replay"); it != j.end() && it->is_string())
                record.replay_id = it->get<std::string>();
            record.shape = LedgerRecord::Shape::runs;
            for (std::size_t i = 0; i < ranges.size(); ++i) {
                const auto& r = ranges[i];
                auto partition = r.at(0).get<std::string>();
                const auto first = r.at(1).get<int64_t>();
                const auto last = r.at(2).get<int64_t>();
                if (first < 0 || last < first || last - first > 100'000'000)
                    continue;  // not a run a replay writes
                auto where = destination(to, i);
                record.runs.push_back({std::move(partition), first, last, std::move(where)});
            }
            return record;
        }
        if (j.contains("ids")) {
            const auto& ids = j.at("ids");
            const auto& to = j.at("to");
            record.shape = LedgerRecord::Shape::ids;
            for (std::size_t i = 0; i < ids.size(); ++i) {
                auto where = destination(to, i);
                record.ids.emplace_back(ids[i].get<std::string>(), std::move(where));
            }
            return record;
        }
        record.detail = j.value("detail", "");
        return record;
    } catch (const nlohmann::json::exception&) {
        // Not ours, unless it broke part way through its runs or ids.
        if (record.shape == LedgerRecord::Shape::letter) return std::nullopt;
        return record;
    }
}

void add_ledger_record(std::map<std::string, LedgerEntry>& ledger, const std::string& key,
                       const LedgerRecord& record) {
    switch (record.shape) {
        case LedgerRecord::Shape::runs:
            for (const auto& run : record.runs) {
                const auto prefix = run.partition + ':';
                for (auto offset = run.first; offset <= run.last; ++offset)
                    ledger[prefix + std::to_string(offset)] = {record.state, record.at_ms, run.to};
            }
            return;
        case LedgerRecord::Shape::ids:
            for (const auto& [id, where] : record.ids)
                ledger[id] = {record.state, record.at_ms, where};
            return;
        case LedgerRecord::Shape::letter:
            ledger[key] = {record.state, record.at_ms, record.detail};
            return;
    }
}

std::string ledger_name(const QueueConfig& config) {
    return config.topic + ".ledger";
}

void ensure_ledger_topic(kafka::Admin& admin, const std::string& name) {
    admin.create_topic(name, 1, 1, {{"cleanup.policy", "compact"}}, true);
}

std::map<std::string, LedgerEntry> read_ledger(Clients& clients) {
    std::map<std::string, LedgerEntry> out;
    const auto name = ledger_name(clients.config);
    auto add = [&](const std::string& key, std::string_view value) {
        if (auto record = decode_ledger_record(value)) add_ledger_record(out, key, *record);
    };
    if (clients.redis) {
        auto r = clients.connection->command({"HGETALL", name});
        if (r->type == REDIS_REPLY_ARRAY)
            for (std::size_t i = 0; i + 1 < r->elements; i += 2)
                add(postroom::redis::detail::text(r->element[i]),
                    postroom::redis::detail::text(r->element[i + 1]));
        return out;
    }
    scan_kafka(clients, name, false,
               [&](MessageBatch&& batch) {
                   for (const auto& m : batch.views()) {
                       if (!m.key) continue;
                       if (m.value)
                           add(std::string(*m.key), *m.value);
                       else
                           out.erase(std::string(*m.key));  // a tombstone
                   }
                   return true;
               },
               {});
    return out;
}

void write_ledger(Clients& clients,
                  const std::vector<std::pair<std::string, LedgerEntry>>& entries) {
    if (entries.empty()) return;
    const auto name = ledger_name(clients.config);
    if (clients.redis) {
        postroom::redis::detail::Command c{"HSET", name};
        for (const auto& [id, e] : entries) {
            c.push_back(id);
            c.push_back(encode_ledger_entry(e));
        }
        auto r = clients.connection->command(c);
        if (postroom::redis::detail::is_error(r.get()))
            throw UsageError("writing the ledger '" + name +
                             "': " + postroom::redis::detail::text(r.get()));
        return;
    }
    ensure_ledger_topic(clients.the_admin(), name);
    std::vector<OutgoingMessage> records;
    for (const auto& [id, e] : entries)
        records.push_back({name, id, encode_ledger_entry(e), {}, std::nullopt});
    clients.the_producer().send_batch(std::move(records))->raise_for_failures();
}

}  // namespace postroom::dlq::detail
