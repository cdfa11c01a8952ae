// The transport contract on the embedded broker.
#include <unistd.h>

#include "postroom/embedded/broker.hpp"
#include "transport_contract.hpp"

namespace {

struct EmbeddedBackend {
    std::string name = "transport-" + std::to_string(::getpid());
    std::shared_ptr<postroom::embedded::Broker> broker = postroom::embedded::Broker::shared(name);
    std::string url() const { return "embedded://" + name; }
    void create_topic(const std::string& topic) { broker->create_topic(topic, 1); }
    void delete_topic(const std::string&) {}  // the broker goes with the process
    postroom::transport::Properties consumer_properties() const {
        return {{"session.timeout.ms", "6000"}};
    }
};

}  // namespace

INSTANTIATE_TYPED_TEST_SUITE_P(Embedded, TransportContract, ::testing::Types<EmbeddedBackend>);
