#pragma once
// Conversion of consumed librdkafka messages into postroom values.

#include "handles.hpp"
#include "postroom/message.hpp"

#include <vector>

namespace postroom::kafka::detail {

Message to_message(const rd_kafka_message_t& msg);

// Consumed messages as a batch of views (the batch copies what they hold; they can go).
MessageBatch to_batch(std::vector<MessageHandle> messages);

}  // namespace postroom::kafka::detail
