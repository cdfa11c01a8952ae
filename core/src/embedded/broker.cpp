#include "postroom/embedded/broker.hpp"

#include <map>
#include <mutex>

#include "../kafka/common.hpp"
#include "../kafka/handles.hpp"
#include "postroom/error.hpp"

namespace postroom::embedded {

using namespace postroom::kafka::detail;

struct Broker::Impl : ClientBase {
    int broker_count = 1;
    mutable std::mutex mutex;
    std::map<std::string, int> topics;  // created through create_topic
    ClientHandle rk;                    // owns the handle the mock cluster is attached to
    MockClusterHandle cluster;          // destroyed first (declared last)
};

Broker::Broker(int broker_count) : impl_(std::make_unique<Impl>()) {
    if (broker_count < 1) throw UsageError("an embedded broker needs at least one broker node");
    impl_->label = "embedded broker";
    impl_->broker_count = broker_count;
    ConfBuilder conf;
    // This handle only anchors the mock cluster; it never connects anywhere.
    impl_->rk = conf.create(RD_KAFKA_PRODUCER, impl_.get());
    impl_->cluster.reset(rd_kafka_mock_cluster_new(impl_->rk.get(), broker_count));
    if (!impl_->cluster) throw TransportError("cannot start the embedded broker", Retriable::no);
}

Broker::~Broker() = default;

std::shared_ptr<Broker> Broker::shared(const std::string& name) {
    static std::mutex mutex;
    // Leaked on purpose: clients may still be closing during static destruction at exit.
    static auto* registry = new std::map<std::string, std::shared_ptr<Broker>>();
    std::lock_guard lock(mutex);
    auto& slot = (*registry)[name];
    if (!slot) slot = std::make_shared<Broker>(1);
    return slot;
}

std::string Broker::bootstrap_servers() const {
    return rd_kafka_mock_cluster_bootstraps(impl_->cluster.get());
}

bool Broker::has_topic(const std::string& topic) const {
    return partitions(topic) > 0;
}

int Broker::partitions(const std::string& topic) const {
    std::lock_guard lock(impl_->mutex);
    auto it = impl_->topics.find(topic);
    return it == impl_->topics.end() ? 0 : it->second;
}

int Broker::broker_count() const noexcept {
    return impl_->broker_count;
}

void Broker::create_topic(const std::string& topic, int partitions, int replication_factor) {
    if (topic.empty() || topic.size() > 249)
        throw UsageError("topic names must be 1 to 249 characters");
    for (char c : topic)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            throw UsageError("topic name '" + topic +
                             "' is invalid: use letters, digits, '.', '_' and '-'");
    if (partitions < 1) throw UsageError("a topic needs at least one partition");
    std::lock_guard lock(impl_->mutex);
    if (auto it = impl_->topics.find(topic); it != impl_->topics.end()) {
        if (it->second != partitions)
            throw UsageError("topic '" + topic + "' already exists with " +
                             std::to_string(it->second) + " partitions");
        return;
    }
    int rf = std::min(replication_factor, impl_->broker_count);
    auto err = rd_kafka_mock_topic_create(impl_->cluster.get(), topic.c_str(), partitions, rf);
    if (err) throw_error(err, "embedded broker: create topic '" + topic + "'");
    impl_->topics[topic] = partitions;
}

void Broker::push_request_errors(int16_t api_key, const std::vector<int>& errors) {
    std::vector<rd_kafka_resp_err_t> errs;
    errs.reserve(errors.size());
    for (int e : errors) errs.push_back(static_cast<rd_kafka_resp_err_t>(e));
    rd_kafka_mock_push_request_errors_array(impl_->cluster.get(), api_key, errs.size(),
                                            errs.data());
}

void Broker::clear_request_errors(int16_t api_key) {
    rd_kafka_mock_clear_request_errors(impl_->cluster.get(), api_key);
}

void Broker::set_broker_down(int32_t broker_id) {
    rd_kafka_mock_broker_set_down(impl_->cluster.get(), broker_id);
}

void Broker::set_broker_up(int32_t broker_id) {
    rd_kafka_mock_broker_set_up(impl_->cluster.get(), broker_id);
}

void Broker::set_broker_rtt(int32_t broker_id, int rtt_ms) {
    rd_kafka_mock_broker_set_rtt(impl_->cluster.get(), broker_id, rtt_ms);
}

void Broker::set_topic_error(const std::string& topic, int error) {
    rd_kafka_mock_topic_set_error(impl_->cluster.get(), topic.c_str(),
                                  static_cast<rd_kafka_resp_err_t>(error));
}

}  // namespace postroom::embedded
