#include "messages.hpp"

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

}  // namespace postroom::kafka::detail
