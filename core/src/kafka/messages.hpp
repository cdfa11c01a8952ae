#pragma once
// Conversion of consumed librdkafka messages into postroom values.

#include "handles.hpp"
#include "postroom/message.hpp"

namespace postroom::kafka::detail {

Message to_message(const rd_kafka_message_t& msg);

}  // namespace postroom::kafka::detail
