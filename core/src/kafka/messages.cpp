#include "messages.hpp"

#include <cstring>

namespace postroom::kafka::detail {

namespace {

// Calls `f(name, value)` for each header of a consumed message, in order (a null value is
// nullopt). librdkafka parses the headers on the first request and keeps them.
template <class F>
void each_header(const rd_kafka_message_t& msg, F f) {
    rd_kafka_headers_t* headers = nullptr;  // owned by the message
    if (rd_kafka_message_headers(&msg, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR || !headers) return;
    const char* name;
    const void* value;
    std::size_t size;
    for (std::size_t i = 0;
         rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i)
        f(std::string_view(name), value ? std::optional<std::string_view>(
                                              std::in_place, static_cast<const char*>(value), size)
                                        : std::nullopt);
}

struct Bytes final : MessageBatch::Storage {
    std::unique_ptr<char[]> bytes;
};

}  // namespace

Message to_message(const rd_kafka_message_t& msg) {
    Message m;
    m.topic = msg.rkt ? rd_kafka_topic_name(msg.rkt) : "";
    m.partition = msg.partition;
    m.offset = msg.offset;
    if (msg.key) m.key.emplace(static_cast<const char*>(msg.key), msg.key_len);
    if (msg.payload) m.value.emplace(static_cast<const char*>(msg.payload), msg.len);
    rd_kafka_timestamp_type_t type;
    m.timestamp_ms = rd_kafka_message_timestamp(&msg, &type);
    each_header(msg, [&](std::string_view name, std::optional<std::string_view> value) {
        m.headers.push_back(
            {std::string(name), value ? std::optional<std::string>(*value) : std::nullopt});
    });
    return m;
}

MessageBatch to_batch(std::vector<MessageHandle> messages) {
    // Everything the views need is copied into one block: librdkafka's messages go at once
    // (a client cannot be destroyed while any of its messages lives), for one allocation
    // per batch instead of several per message.
    std::size_t header_count = 0, size = 0;
    for (const auto& m : messages) {
        if (m->rkt) size += std::strlen(rd_kafka_topic_name(m->rkt));
        size += m->key_len + m->len;
        each_header(*m, [&](std::string_view name, std::optional<std::string_view> value) {
            size += name.size() + (value ? value->size() : 0);
            ++header_count;
        });
    }
    auto storage = std::make_unique<Bytes>();
    storage->bytes = std::make_unique_for_overwrite<char[]>(size);  // all written below
    char* at = storage->bytes.get();
    auto copy = [&](const void* data, std::size_t n) {
        if (n > 0) std::memcpy(at, data, n);
        std::string_view v(at, n);
        at += n;
        return v;
    };
    std::vector<MessageView> views;
    views.reserve(messages.size());
    std::vector<HeaderView> headers;
    headers.reserve(header_count);  // never reallocated: the views' spans point into it
    std::string_view topic;         // consecutive messages mostly share theirs: copied once
    const char* topic_source = nullptr;
    for (std::size_t i = 0; i < messages.size(); ++i) {
        const auto& msg = *messages[i];
        MessageView v;
        if (msg.rkt) {
            const char* name = rd_kafka_topic_name(msg.rkt);
            if (name != topic_source) {
                topic_source = name;
                topic = copy(name, std::strlen(name));
            }
            v.topic = topic;
        }
        v.partition = msg.partition;
        v.offset = msg.offset;
        if (msg.key) v.key = copy(msg.key, msg.key_len);
        if (msg.payload) v.value = copy(msg.payload, msg.len);
        rd_kafka_timestamp_type_t type;
        v.timestamp_ms = rd_kafka_message_timestamp(&msg, &type);
        const auto first = headers.size();
        each_header(msg, [&](std::string_view name, std::optional<std::string_view> value) {
            HeaderView h{copy(name.data(), name.size()), std::nullopt};
            if (value) h.value = copy(value->data(), value->size());
            headers.push_back(h);
        });
        v.headers = std::span<const HeaderView>(headers.data() + first, headers.size() - first);
        views.push_back(v);
    }
    return MessageBatch(std::move(storage), std::move(views), std::move(headers));
}

}  // namespace postroom::kafka::detail
