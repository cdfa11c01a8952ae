#include "messages.hpp"

#include <cstring>

namespace postroom::kafka::detail {

Message to_message(const rd_kafka_message_t& msg) {
    Message m;
    m.topic = msg.rkt ? rd_kafka_topic_name(msg.rkt) : "";
    m.partition = msg.partition;
    m.offset = msg.offset;
    if (msg.key) m.key.emplace(static_cast<const char*>(msg.key), msg.key_len);
    if (msg.payload) m.value.emplace(static_cast<const char*>(msg.payload), msg.len);
    rd_kafka_timestamp_type_t type;
    m.timestamp_ms = rd_kafka_message_timestamp(&msg, &type);
    rd_kafka_headers_t* headers = nullptr;  // owned by the message
    if (rd_kafka_message_headers(&msg, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR && headers) {
        const char* name;
        const void* value;
        size_t size;
        for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) ==
                           RD_KAFKA_RESP_ERR_NO_ERROR;
             ++i) {
            Header h{name, std::nullopt};
            if (value) h.value.emplace(static_cast<const char*>(value), size);
            m.headers.push_back(std::move(h));
        }
    }
    return m;
}

namespace {

struct Bytes final : MessageBatch::Storage {
    std::unique_ptr<char[]> bytes;
};

}  // namespace

MessageBatch to_batch(std::vector<MessageHandle> messages) {
    // Everything the views need is copied into one block: librdkafka's messages go at once
    // (a client cannot be destroyed while any of its messages lives), for one allocation
    // per batch instead of several per message.
    std::vector<rd_kafka_headers_t*> parsed(messages.size(), nullptr);
    std::size_t header_count = 0, size = 0;
    for (std::size_t i = 0; i < messages.size(); ++i) {
        const auto& msg = *messages[i];
        if (msg.rkt) size += std::strlen(rd_kafka_topic_name(msg.rkt));
        size += msg.key_len + msg.len;
        // librdkafka parses the headers on this first request.
        if (rd_kafka_message_headers(&msg, &parsed[i]) != RD_KAFKA_RESP_ERR_NO_ERROR || !parsed[i])
            continue;
        const char* name;
        const void* value;
        std::size_t value_size;
        for (std::size_t k = 0; rd_kafka_header_get_all(parsed[i], k, &name, &value, &value_size) ==
                                RD_KAFKA_RESP_ERR_NO_ERROR;
             ++k) {
            size += std::strlen(name) + value_size;
            ++header_count;
        }
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
        if (parsed[i]) {
            const char* name;
            const void* value;
            std::size_t value_size;
            for (std::size_t k = 0;
                 rd_kafka_header_get_all(parsed[i], k, &name, &value, &value_size) ==
                 RD_KAFKA_RESP_ERR_NO_ERROR;
                 ++k) {
                HeaderView h{copy(name, std::strlen(name)), std::nullopt};
                if (value) h.value = copy(value, value_size);
                headers.push_back(h);
            }
        }
        v.headers = std::span<const HeaderView>(headers.data() + first, headers.size() - first);
        views.push_back(v);
    }
    return MessageBatch(std::move(storage), std::move(views), std::move(headers));
}

}  // namespace postroom::kafka::detail
