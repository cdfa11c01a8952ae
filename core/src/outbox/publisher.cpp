#include "publisher.hpp"

#include <librdkafka/rdkafka.h>

#include <simdjson.h>
#include <algorithm>
#include <chrono>
#include <string_view>

#include "../runtime/crash_points.hpp"
#include "common.hpp"
#include "postroom/binding.hpp"
#include "postroom/error.hpp"
#include "postroom/event.hpp"

namespace postroom::outbox::detail {

using namespace std::chrono;

namespace {

// An outbox row's headers column: a flat JSON object of strings, parsed by simdjson (the
// fastest kernel this CPU has, chosen at run time). Each header goes to `put(name, value)`;
// anything else throws CodecError naming the fault.
void read_headers(std::string_view json,
                  const std::function<void(std::string_view, std::string_view)>& put) {
    // One parser and one padded buffer per thread, reused from row to row.
    thread_local simdjson::dom::parser parser;
    thread_local std::string buffer;
    buffer.assign(json);
    buffer.reserve(json.size() + simdjson::SIMDJSON_PADDING);
    simdjson::dom::element doc;
    if (auto e = parser
                     .parse(simdjson::padded_string_view(buffer.data(), buffer.size(),
                                                         buffer.capacity()))
                     .get(doc))
        throw CodecError("headers",
                         std::string("headers are not valid JSON: ") + simdjson::error_message(e));
    simdjson::dom::object object;
    if (doc.get_object().get(object)) throw CodecError("headers", "headers must be a JSON object");
    for (auto [name, value] : object) {
        std::string_view text;
        if (value.get_string().get(text))
            throw CodecError(std::string(name), "header '" + std::string(name) +
                                                    "' must be a string in the outbox row");
        put(name, text);
    }
}

}  // namespace

std::vector<std::optional<std::string>> RowReader::extras(std::vector<stores::SqlValue>& r,
                                                          std::size_t from) const {
    std::vector<std::optional<std::string>> extras;
    for (std::size_t i = from; i < r.size(); ++i) extras.push_back(take_text(r[i]));
    return extras;
}

Pending RowReader::pending(std::vector<stores::SqlValue>&& r, std::size_t extras_from) const {
    Pending row{int_of(r[0]),
                take_text(r[1]).value_or(""),
                take_text(r[3]).value_or(""),
                {},
                std::nullopt,
                {}};
    const auto row_extras = extras(r, extras_from);
    row.topic = router_.topic(take_text(r[7]), take_text(r[2]), row_extras);
    try {
        Event e(row.id, config_.source, take_text(r[4]).value_or(""));
        e.data = take_text(r[5]);
        const auto* headers = std::get_if<std::string>(&r[6]);
        read_headers(headers ? std::string_view(*headers) : std::string_view("{}"),
                     [&e](std::string_view k, std::string_view v) {
                         // A header named id, type or specversion cannot override the row's
                         // columns: as an extension name, validation rejects it.
                         if (kept_out_of_headers(k))
                             e.extensions.insert_or_assign(std::string(k), std::string(v));
                         else
                             e.set_attribute(k, std::string(v));
                     });
        auto m = cloudevents::to_message(e, row.topic, row.aggregate_id);  // validates the event
        router_.add_headers(m, row.id, row_extras);
        const std::size_t size = (m.value ? m.value->size() : 0) + m.key->size();
        if (size > config_.max_message_bytes)
            throw CodecError("data", "the event is " + std::to_string(size) +
                                         " bytes, over max_message_bytes (" +
                                         std::to_string(config_.max_message_bytes) + ")");
        row.message = std::move(m);
    } catch (const Error& e) {
        row.error = e.what();
    }
    return row;
}

kafka::Producer& Publisher::producer() {
    if (!producer_) {
        kafka::ProducerConfig pc;
        pc.broker_url = config_.broker_url;
        pc.client_id = "postroom-outbox-relay";
        pc.linger = milliseconds(0);  // a batch is queued at once: send it at once
        pc.properties = config_.producer_properties;
        pc.properties.emplace("message.timeout.ms",
                              std::to_string(config_.publish_timeout.count()));
        pc.properties.emplace("message.max.bytes",
                              std::to_string(config_.max_message_bytes + 4096));
        // A topic that does not exist fails its rows after 2 s, not the default 30 s.
        pc.properties.emplace("topic.metadata.propagation.max.ms", "2000");
        producer_ = std::make_unique<kafka::Producer>(pc);
    }
    return *producer_;
}

void Publisher::publish(Flight& f) {
    std::vector<OutgoingMessage> batch;
    for (std::size_t i = 0; i < f.rows.size(); ++i)
        if (f.rows[i].message) {
            f.index.push_back(i);
            batch.push_back(std::move(*f.rows[i].message));
            f.rows[i].message.reset();
        }
    if (batch.empty()) return;
    if (!to_redis_) {
        f.delivery = producer().produce_batch(std::move(batch));
        return;
    }
    try {
        if (!stream_producer_)
            stream_producer_ = std::make_unique<redis::StreamProducer>(redis::StreamProducerConfig{
                config_.broker_url, std::nullopt, config_.publish_timeout});
        auto results = stream_producer_->add_batch(batch);
        for (std::size_t k = 0; k < results.size(); ++k) {
            auto& row = f.rows[f.index[k]];
            if (results[k].ok())
                f.sent.push_back(row.seq);
            else
                f.failed.emplace_back(row.seq, "Redis refused it: " + results[k].error);
        }
    } catch (const Error& e) {
        f.trouble = true;  // any of them may have been added: all are sent again
        f.why = e.what();
        f.sent.clear();
        f.failed.clear();
    }
}

void Publisher::settle(Flight& f, const std::function<bool()>& renew_lease) {
    using Clock = steady_clock;
    if (f.delivery) {
        auto& prod = producer();
        const auto give_up = Clock::now() + config_.publish_timeout + seconds(5);
        auto renew_at = Clock::now() + config_.lease / 3;
        while (!prod.wait(*f.delivery, std::min<milliseconds>(config_.lease / 3, seconds(1)))) {
            if (Clock::now() > give_up) {
                f.trouble = true;
                f.why = "no acknowledgement within the publish timeout";
                break;
            }
            if (Clock::now() >= renew_at) {
                renew_at = Clock::now() + config_.lease / 3;
                if (!renew_lease()) {
                    f.trouble = true;
                    f.why = "the lease was lost while waiting for the broker";
                    break;
                }
            }
        }
        const auto& reports = f.delivery->reports();
        for (std::size_t k = 0; k < reports.size() && !f.trouble; ++k) {
            const auto& rep = reports[k];
            const auto& row = f.rows[f.index[k]];
            if (rep.ok()) {
                f.sent.push_back(row.seq);
            } else if (rep.fatal()) {
                f.trouble = true;  // the producer's fault, not the row's
                f.why = rep.error_message() + " (the producer is recreated)";
                f.recreate_producer = true;
            } else if (rep.retriable() == Retriable::no) {
                f.failed.emplace_back(row.seq, "the broker refused it: " + rep.error_message());
            } else {
                f.trouble = true;
                f.why = rep.error_message();
            }
        }
    }
    for (const auto& row : f.rows)
        if (!row.error.empty()) f.failed.emplace_back(row.seq, row.error);
    if (!f.sent.empty()) runtime::detail::crash_point("outbox-after-ack");
}

void Publisher::let_go(const Flight& f) {
    if (f.delivery) producer().wait(*f.delivery, seconds(5));
}

void Publisher::close() {
    if (producer_) {
        producer_->close();
        producer_.reset();
    }
    stream_producer_.reset();
}

}  // namespace postroom::outbox::detail
