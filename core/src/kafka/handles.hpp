#pragma once
// Owning aliases for every librdkafka handle postroom holds. Nothing calls *_destroy by hand.

#include <memory>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "../detail/deleter.hpp"

namespace postroom::kafka::detail {

using postroom::detail::Deleter;

using ClientHandle = std::unique_ptr<rd_kafka_t, Deleter<rd_kafka_destroy>>;
using ConfHandle = std::unique_ptr<rd_kafka_conf_t, Deleter<rd_kafka_conf_destroy>>;
using QueueHandle = std::unique_ptr<rd_kafka_queue_t, Deleter<rd_kafka_queue_destroy>>;
using PartitionListHandle = std::unique_ptr<rd_kafka_topic_partition_list_t,
                                            Deleter<rd_kafka_topic_partition_list_destroy>>;
using HeadersHandle = std::unique_ptr<rd_kafka_headers_t, Deleter<rd_kafka_headers_destroy>>;
using MessageHandle = std::unique_ptr<rd_kafka_message_t, Deleter<rd_kafka_message_destroy>>;
using EventHandle = std::unique_ptr<rd_kafka_event_t, Deleter<rd_kafka_event_destroy>>;
using ErrorHandle = std::unique_ptr<rd_kafka_error_t, Deleter<rd_kafka_error_destroy>>;
using NewTopicHandle = std::unique_ptr<rd_kafka_NewTopic_t, Deleter<rd_kafka_NewTopic_destroy>>;
using DeleteTopicHandle =
    std::unique_ptr<rd_kafka_DeleteTopic_t, Deleter<rd_kafka_DeleteTopic_destroy>>;
using AdminOptionsHandle =
    std::unique_ptr<rd_kafka_AdminOptions_t, Deleter<rd_kafka_AdminOptions_destroy>>;
using MetadataHandle =
    std::unique_ptr<const rd_kafka_metadata_t, Deleter<rd_kafka_metadata_destroy>>;
using DeleteRecordsHandle =
    std::unique_ptr<rd_kafka_DeleteRecords_t, Deleter<rd_kafka_DeleteRecords_destroy>>;
using ConfigResourceHandle =
    std::unique_ptr<rd_kafka_ConfigResource_t, Deleter<rd_kafka_ConfigResource_destroy>>;
using TopicHandle = std::unique_ptr<rd_kafka_topic_t, Deleter<rd_kafka_topic_destroy>>;
using MockClusterHandle =
    std::unique_ptr<rd_kafka_mock_cluster_t, Deleter<rd_kafka_mock_cluster_destroy>>;

}  // namespace postroom::kafka::detail
