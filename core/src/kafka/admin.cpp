#include "postroom/kafka/admin.hpp"

#include <algorithm>
#include <chrono>
#include <thread>

#include "../detail/excerpt.hpp"
#include "common.hpp"
#include "postroom/embedded/broker.hpp"
#include "postroom/redact.hpp"

namespace postroom::kafka {

using namespace detail;

void check_topic_name(std::string_view name) {
    auto invalid = [&](const std::string& why) {
        throw ConfigurationError("'" + postroom::detail::excerpt(name) +
                                 "' is not a valid Kafka topic name: " + why);
    };
    if (name.empty()) invalid("it is empty");
    if (name.size() > 249) invalid("it is longer than 249 characters");
    if (name == "." || name == "..") invalid("'.' and '..' are not allowed");
    for (char c : name)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            invalid("use only ASCII letters, digits, '.', '_' and '-'");
}

struct Admin::Impl : ClientBase {
    AdminConfig config;
    ResolvedBroker broker;
    ClientHandle rk;  // last: destroyed first

    int timeout_ms() const { return static_cast<int>(config.timeout.count()); }

    MetadataHandle metadata_once(const char* topic) {
        const rd_kafka_metadata_t* raw = nullptr;
        rd_kafka_topic_t* rkt = nullptr;
        if (topic) rkt = rd_kafka_topic_new(rk.get(), topic, nullptr);
        auto err = rd_kafka_metadata(rk.get(), topic ? 0 : 1, rkt, &raw, timeout_ms());
        if (rkt) rd_kafka_topic_destroy(rkt);
        if (err) throw_error(err, "metadata request to " + redacted_url(config.broker_url));
        return MetadataHandle(raw);
    }

    // Metadata of `topic` (null: all topics). Right after a topic is created its leader may
    // not be elected yet (LEADER_NOT_AVAILABLE): a passing state, so ask again until no topic
    // reports it, or the admin timeout.
    MetadataHandle metadata(const char* topic) {
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms());
        for (;;) {
            auto md = metadata_once(topic);
            bool settled = true;
            for (int i = 0; i < md->topic_cnt; ++i) {
                if (md->topics[i].err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE) settled = false;
            }
            if (settled || std::chrono::steady_clock::now() >= deadline) return md;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    }

    // Runs one admin request and waits for its result event.
    EventHandle await(QueueHandle& queue, rd_kafka_event_type_t type, const std::string& what) {
        EventHandle ev(rd_kafka_queue_poll(queue.get(), timeout_ms() + 1000));
        if (!ev)
            throw TimeoutError(what + ": no answer from " + redacted_url(config.broker_url) +
                               " within " + std::to_string(timeout_ms()) +
                               " ms; is the broker running?");
        if (rd_kafka_event_type(ev.get()) != type || rd_kafka_event_error(ev.get()))
            throw_error(rd_kafka_event_error(ev.get()), what,
                        rd_kafka_event_error_string(ev.get()));
        return ev;
    }

    AdminOptionsHandle options(rd_kafka_admin_op_t op) {
        AdminOptionsHandle o(rd_kafka_AdminOptions_new(rk.get(), op));
        char errstr[256];
        rd_kafka_AdminOptions_set_request_timeout(o.get(), timeout_ms(), errstr, sizeof errstr);
        rd_kafka_AdminOptions_set_operation_timeout(o.get(), timeout_ms(), errstr, sizeof errstr);
        return o;
    }
};

Admin::Admin(AdminConfig config) : impl_(std::make_unique<Impl>()) {
    auto& impl = *impl_;
    impl.config = std::move(config);
    if (impl.config.timeout.count() <= 0)
        throw ConfigurationError("admin timeout must be positive");
    impl.label = "admin client";
    impl.log_handler = impl.config.log_handler;
    impl.broker = resolve(impl.config.broker_url);
    ConfBuilder conf;
    conf.set("bootstrap.servers", impl.broker.bootstrap_servers)
        .set("client.id", impl.config.client_id)
        .set("allow.auto.create.topics", "false");
    conf.set_all(impl.config.properties);
    impl.rk = conf.create(RD_KAFKA_PRODUCER, &impl);
}

Admin::~Admin() = default;
Admin::Admin(Admin&&) noexcept = default;
Admin& Admin::operator=(Admin&&) noexcept = default;

const AdminConfig& Admin::config() const noexcept {
    return impl_->config;
}

void Admin::create_topic(const std::string& name, int partitions, int replication_factor,
                         const std::map<std::string, std::string>& topic_config, bool exist_ok) {
    if (impl_->broker.embedded) {
        if (exist_ok && describe_topic(name)) return;
        impl_->broker.embedded->create_topic(name, partitions, replication_factor);
        return;
    }
    char errstr[512];
    NewTopicHandle topic(
        rd_kafka_NewTopic_new(name.c_str(), partitions, replication_factor, errstr, sizeof errstr));
    if (!topic) throw UsageError("cannot create topic '" + name + "': " + errstr);
    for (const auto& [k, v] : topic_config)
        if (auto err = rd_kafka_NewTopic_set_config(topic.get(), k.c_str(), v.c_str()))
            throw_error(err, "topic '" + name + "' setting '" + k + "'");
    QueueHandle queue(rd_kafka_queue_new(impl_->rk.get()));
    auto opts = impl_->options(RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_NewTopic_t* topics[] = {topic.get()};
    rd_kafka_CreateTopics(impl_->rk.get(), topics, 1, opts.get(), queue.get());
    auto what = "create topic '" + name + "'";
    auto ev = impl_->await(queue, RD_KAFKA_EVENT_CREATETOPICS_RESULT, what);
    size_t n = 0;
    auto results =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev.get()), &n);
    for (size_t i = 0; i < n; ++i) {
        auto err = rd_kafka_topic_result_error(results[i]);
        if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS && exist_ok) continue;
        if (err) throw_error(err, what, rd_kafka_topic_result_error_string(results[i]));
    }
    // The controller answers once the topic is recorded; the broker's metadata may follow a
    // moment later. Return once metadata shows it (or at the admin timeout), so that what
    // comes next (listing it, producing to it) sees it.
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(impl_->timeout_ms());
    while (!describe_topic(name) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

void Admin::delete_topic(const std::string& name) {
    if (impl_->broker.embedded)
        throw UsageError(
            "the embedded broker cannot delete topics; use a new embedded://NAME broker "
            "for a clean slate");
    DeleteTopicHandle topic(rd_kafka_DeleteTopic_new(name.c_str()));
    QueueHandle queue(rd_kafka_queue_new(impl_->rk.get()));
    auto opts = impl_->options(RD_KAFKA_ADMIN_OP_DELETETOPICS);
    rd_kafka_DeleteTopic_t* topics[] = {topic.get()};
    rd_kafka_DeleteTopics(impl_->rk.get(), topics, 1, opts.get(), queue.get());
    auto what = "delete topic '" + name + "'";
    auto ev = impl_->await(queue, RD_KAFKA_EVENT_DELETETOPICS_RESULT, what);
    size_t n = 0;
    auto results =
        rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev.get()), &n);
    for (size_t i = 0; i < n; ++i)
        if (auto err = rd_kafka_topic_result_error(results[i]))
            throw_error(err, what, rd_kafka_topic_result_error_string(results[i]));
}

namespace {
TopicInfo info_of(const rd_kafka_metadata_topic_t& t) {
    TopicInfo info{t.topic, t.partition_cnt, 0};
    if (t.partition_cnt > 0) info.replication_factor = t.partitions[0].replica_cnt;
    return info;
}
}  // namespace

std::vector<TopicInfo> Admin::list_topics() {
    auto md = impl_->metadata(nullptr);
    std::vector<TopicInfo> out;
    for (int i = 0; i < md->topic_cnt; ++i) {
        const auto& t = md->topics[i];
        if (t.err || std::string_view(t.topic).rfind("__", 0) == 0) continue;
        if (impl_->broker.embedded && !impl_->broker.embedded->has_topic(t.topic)) continue;
        out.push_back(info_of(t));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    return out;
}

std::optional<TopicInfo> Admin::describe_topic(const std::string& name) {
    if (impl_->broker.embedded) {
        // A metadata request would make the embedded broker create the topic.
        int n = impl_->broker.embedded->partitions(name);
        if (n == 0) return std::nullopt;
        return TopicInfo{name, n, 1};
    }
    auto md = impl_->metadata(name.c_str());
    for (int i = 0; i < md->topic_cnt; ++i) {
        const auto& t = md->topics[i];
        if (name != t.topic) continue;
        if (t.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
            t.err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
            return std::nullopt;
        if (t.err) throw_error(t.err, "describe topic '" + name + "'");
        return info_of(t);
    }
    return std::nullopt;
}

std::optional<std::map<std::string, std::string>> Admin::topic_config(const std::string& name) {
    if (impl_->broker.embedded) {
        if (!impl_->broker.embedded->has_topic(name)) return std::nullopt;
        return std::map<std::string, std::string>{};
    }
    ConfigResourceHandle resource(
        rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, name.c_str()));
    QueueHandle queue(rd_kafka_queue_new(impl_->rk.get()));
    auto opts = impl_->options(RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_ConfigResource_t* resources[] = {resource.get()};
    rd_kafka_DescribeConfigs(impl_->rk.get(), resources, 1, opts.get(), queue.get());
    const auto what = "describe the configuration of topic '" + name + "'";
    auto ev = impl_->await(queue, RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT, what);
    size_t n = 0;
    auto results = rd_kafka_DescribeConfigs_result_resources(
        rd_kafka_event_DescribeConfigs_result(ev.get()), &n);
    for (size_t i = 0; i < n; ++i) {
        if (name != rd_kafka_ConfigResource_name(results[i])) continue;
        const auto err = rd_kafka_ConfigResource_error(results[i]);
        if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
            err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
            return std::nullopt;
        if (err) throw_error(err, what, rd_kafka_ConfigResource_error_string(results[i]));
        std::map<std::string, std::string> config;
        size_t count = 0;
        const auto entries = rd_kafka_ConfigResource_configs(results[i], &count);
        for (size_t k = 0; k < count; ++k) {
            const char* value = rd_kafka_ConfigEntry_value(entries[k]);
            config.emplace(rd_kafka_ConfigEntry_name(entries[k]), value ? value : "");
        }
        return config;
    }
    return std::nullopt;
}

Watermarks Admin::watermarks(const TopicPartition& partition) {
    Watermarks w;
    // Right after a topic is created (or while a broker restarts) the partition's leader may
    // not be known yet; that answer is transient, so ask again until the admin timeout.
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(impl_->timeout_ms());
    rd_kafka_resp_err_t err;
    for (;;) {
        err = rd_kafka_query_watermark_offsets(impl_->rk.get(), partition.topic.c_str(),
                                               partition.partition, &w.low, &w.high,
                                               impl_->timeout_ms());
        const bool leader_moving = err == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
                                   err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
        if (!leader_moving || std::chrono::steady_clock::now() >= deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (err)
        throw_error(err, "watermarks of " + partition.topic + "[" +
                             std::to_string(partition.partition) + "]");
    return w;
}

int64_t Admin::delete_records(const TopicPartition& partition, int64_t before_offset) {
    const auto what = "delete records of " + partition.topic + "[" +
                      std::to_string(partition.partition) + "] below offset " +
                      std::to_string(before_offset);
    if (impl_->broker.embedded)
        throw UsageError(what + ": the embedded broker cannot delete records");
    PartitionListHandle list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), partition.topic.c_str(), partition.partition)
        ->offset = before_offset;
    DeleteRecordsHandle request(rd_kafka_DeleteRecords_new(list.get()));
    QueueHandle queue(rd_kafka_queue_new(impl_->rk.get()));
    auto opts = impl_->options(RD_KAFKA_ADMIN_OP_DELETERECORDS);
    rd_kafka_DeleteRecords_t* requests[] = {request.get()};
    rd_kafka_DeleteRecords(impl_->rk.get(), requests, 1, opts.get(), queue.get());
    auto ev = impl_->await(queue, RD_KAFKA_EVENT_DELETERECORDS_RESULT, what);
    const auto* offsets =
        rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev.get()));
    if (!offsets || offsets->cnt < 1)
        throw TransportError(what + ": no result", Retriable::unknown);
    const auto& r = offsets->elems[0];
    if (r.err) throw_error(r.err, what);
    return r.offset;
}

void Admin::ping() {
    impl_->metadata(nullptr);
}

}  // namespace postroom::kafka
