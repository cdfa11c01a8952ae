#pragma once
// What an administration client tells about a topic (Kafka) or a stream (Redis Streams: one
// partition), the same for every transport.

#include <cstdint>
#include <string>

namespace postroom {

struct TopicInfo {
    std::string name;
    int32_t partitions = 0;
    int32_t replication_factor = 0;
};

struct Watermarks {
    int64_t low = -1;   // first offset still in the log
    int64_t high = -1;  // offset the next message will get
};

}  // namespace postroom
