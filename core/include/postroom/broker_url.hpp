#pragma once
// One way to name a broker everywhere: kafka://host:port[,host:port], embedded://[name],
// redis://host:port/db. Parsing validates; it does not connect.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace postroom {

enum class BrokerScheme { kafka, embedded, redis };

struct HostPort {
    std::string host;
    uint16_t port = 0;
};

struct BrokerUrl {
    BrokerScheme scheme = BrokerScheme::kafka;
    std::vector<HostPort> hosts;  // kafka, redis
    std::string embedded_name;    // embedded://NAME ("" = the default in-process broker)
    int redis_db = 0;
    std::string text;  // the URL as given

    // "host:port,host:port" for librdkafka's bootstrap.servers (kafka scheme only).
    std::string bootstrap_servers() const;
};

// Throws ConfigurationError explaining the accepted forms.
BrokerUrl parse_broker_url(std::string_view url);

}  // namespace postroom
