#pragma once
// Topic administration and cluster inspection.
//
// Thread-safety: all members may be called from any thread; each call blocks until the
// broker answers or the configured timeout passes.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "postroom/kafka/config.hpp"
#include "postroom/message.hpp"
#include "postroom/topics.hpp"

namespace postroom::kafka {

// Throws ConfigurationError, saying why, when `name` can never be a Kafka topic: Kafka takes
// 1 to 249 ASCII letters, digits, '.', '_' and '-', and neither "." nor "..".
void check_topic_name(std::string_view name);

class Admin {
public:
    explicit Admin(AdminConfig config);
    ~Admin();
    Admin(Admin&&) noexcept;
    Admin& operator=(Admin&&) noexcept;

    // Creates a topic. With exist_ok, an existing topic is fine (its partition count is not
    // changed).
    void create_topic(const std::string& name, int partitions = 3, int replication_factor = 1,
                      const std::map<std::string, std::string>& topic_config = {},
                      bool exist_ok = false);
    void delete_topic(const std::string& name);
    // User topics, sorted by name (internal topics such as __consumer_offsets left out).
    std::vector<TopicInfo> list_topics();
    std::optional<TopicInfo> describe_topic(const std::string& name);
    // The topic's configuration as the broker reports it (DescribeConfigs): every entry,
    // defaults included, such as max.message.bytes, retention.ms and cleanup.policy. nullopt
    // when the topic does not exist. The embedded broker keeps no topic configuration: an
    // existing topic there has an empty map.
    std::optional<std::map<std::string, std::string>> topic_config(const std::string& name);
    Watermarks watermarks(const TopicPartition& partition);
    // Deletes the records of `partition` below `before_offset` (DeleteRecords); returns the
    // new low watermark. The embedded broker cannot do this.
    int64_t delete_records(const TopicPartition& partition, int64_t before_offset);
    // Round trip to the broker; throws TimeoutError when it does not answer.
    void ping();

    const AdminConfig& config() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace postroom::kafka
