#include "postroom/transport.hpp"

#include <algorithm>
#include <charconv>
#include <optional>

#include "postroom/broker_url.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/admin.hpp"
#include "postroom/kafka/consumer.hpp"
#include "postroom/kafka/producer.hpp"
#include "postroom/redis/streams.hpp"

namespace postroom::transport {

namespace {

class KafkaConsumer final : public Consumer {
public:
    explicit KafkaConsumer(kafka::ConsumerConfig config) : consumer_(std::move(config)) {}
    void subscribe(const std::vector<std::string>& topics, RebalanceListener listener) override {
        consumer_.subscribe(topics, std::move(listener));
    }
    std::vector<Message> poll_batch(std::size_t max_messages,
                                    std::chrono::milliseconds timeout) override {
        return consumer_.poll_batch(max_messages, timeout);
    }
    void mark_done(const Message& message) override { consumer_.mark_done(message); }
    std::size_t commit() override { return consumer_.commit().size(); }
    void redeliver_from(const Message& message) override {
        consumer_.seek(message.topic_partition(), message.offset, std::chrono::seconds(10));
    }
    void pause(const std::vector<TopicPartition>& partitions) override {
        consumer_.pause(partitions);
    }
    void resume(const std::vector<TopicPartition>& partitions) override {
        consumer_.resume(partitions);
    }
    std::map<TopicPartition, int64_t> lag() const override { return consumer_.lag(); }
    void close() override { consumer_.close(); }

private:
    kafka::Consumer consumer_;
};

class KafkaProducer final : public Producer {
public:
    explicit KafkaProducer(kafka::ProducerConfig config) : producer_(std::move(config)) {}
    void send(const OutgoingMessage& message, std::chrono::milliseconds timeout) override {
        producer_.send(message, timeout);
    }
    TopicLimits limits(const std::string& topic) override {
        if (!admin_) {
            kafka::AdminConfig c;
            c.broker_url = producer_.config().broker_url;
            c.client_id = producer_.config().client_id + "-admin";
            c.properties = producer_.config().properties;
            c.timeout = std::chrono::seconds(3);
            admin_.emplace(std::move(c));
        }
        TopicLimits limits;
        std::optional<std::map<std::string, std::string>> config;
        try {
            config = admin_->topic_config(topic);
        } catch (const TimeoutError&) {
            // A broker that answers metadata but not DescribeConfigs (the embedded broker
            // served by `postroom broker` has no controller to ask): the topic's own limit is
            // unknown, the producer's still holds. A broker that is away fails here too.
            limits.exists = admin_->describe_topic(topic).has_value();
            limits.max_record_bytes = producer_.max_message_bytes();
            return limits;
        }
        limits.exists = config.has_value();
        std::size_t max = producer_.max_message_bytes();
        if (config)
            if (auto it = config->find("max.message.bytes"); it != config->end()) {
                std::size_t topic_max = 0;
                const auto& v = it->second;
                auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), topic_max);
                if (ec == std::errc() && end == v.data() + v.size() && topic_max > 0)
                    max = std::min(max, topic_max);
            }
        limits.max_record_bytes = max;
        return limits;
    }
    void close() override { producer_.close(); }

private:
    kafka::Producer producer_;
    std::optional<kafka::Admin> admin_;  // made on the first limits()
};

std::chrono::milliseconds millis_property(const Properties& p, const std::string& key,
                                          std::chrono::milliseconds fallback) {
    auto it = p.find(key);
    if (it == p.end()) return fallback;
    int64_t v = 0;
    auto [end, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
    if (ec != std::errc() || end != it->second.data() + it->second.size() || v <= 0)
        throw ConfigurationError("Redis consumer property '" + key +
                                 "' must be a positive number of milliseconds, got '" + it->second +
                                 "'");
    return std::chrono::milliseconds(v);
}

}  // namespace

void check_topic_name(const std::string& broker_url, const std::string& name) {
    if (parse_broker_url(broker_url).scheme != BrokerScheme::redis)
        kafka::check_topic_name(name);
    else if (name.empty())
        throw ConfigurationError("a stream name must not be empty");
}

std::unique_ptr<Consumer> open_consumer(const ConsumerOptions& options) {
    auto url = parse_broker_url(options.broker_url);
    if (url.scheme == BrokerScheme::redis) {
        redis::StreamConsumerConfig c;
        c.url = options.broker_url;
        c.group = options.group_id;
        c.client_id = options.client_id;
        c.log = options.log;
        for (const auto& [k, v] : options.properties)
            if (k != "consumer" && k != "start_id" && k != "claim_min_idle_ms" &&
                k != "claim_interval_ms")
                throw ConfigurationError(
                    "unknown Redis consumer property '" + k +
                    "'; known: consumer, start_id, claim_min_idle_ms, claim_interval_ms");
        if (auto it = options.properties.find("consumer"); it != options.properties.end())
            c.consumer = it->second;
        if (auto it = options.properties.find("start_id"); it != options.properties.end())
            c.start_id = it->second;
        c.claim_min_idle =
            millis_property(options.properties, "claim_min_idle_ms", c.claim_min_idle);
        c.claim_interval =
            millis_property(options.properties, "claim_interval_ms", c.claim_interval);
        return std::make_unique<redis::StreamConsumer>(std::move(c));
    }
    kafka::ConsumerConfig c;
    c.broker_url = options.broker_url;
    c.group_id = options.group_id;
    c.client_id = options.client_id;
    c.properties = options.properties;
    return std::make_unique<KafkaConsumer>(std::move(c));
}

std::unique_ptr<Producer> open_producer(const ProducerOptions& options) {
    auto url = parse_broker_url(options.broker_url);
    if (url.scheme == BrokerScheme::redis) {
        redis::StreamProducerConfig c;
        c.url = options.broker_url;
        for (const auto& [k, v] : options.properties) {
            if (k != "maxlen")
                throw ConfigurationError("unknown Redis producer property '" + k +
                                         "'; known: maxlen");
            std::size_t n = 0;
            auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
            if (ec != std::errc() || end != v.data() + v.size() || n == 0)
                throw ConfigurationError(
                    "Redis producer property 'maxlen' must be a positive "
                    "number, got '" +
                    v + "'");
            c.maxlen = n;
        }
        return std::make_unique<redis::StreamProducer>(std::move(c));
    }
    kafka::ProducerConfig c;
    c.broker_url = options.broker_url;
    c.client_id = options.client_id;
    c.linger = std::chrono::milliseconds(0);
    c.properties = options.properties;
    if (options.max_record_bytes)
        c.properties.emplace("message.max.bytes", std::to_string(*options.max_record_bytes));
    return std::make_unique<KafkaProducer>(std::move(c));
}

}  // namespace postroom::transport
