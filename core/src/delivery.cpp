#include "postroom/delivery.hpp"

#include <algorithm>
#include <utility>

namespace postroom {

namespace {

class Refusal final : public DeliveryFailure {
public:
    explicit Refusal(std::string text) : text_(std::move(text)) {}
    std::string message() const override { return text_; }
    Retriable retriable() const noexcept override { return Retriable::no; }
    [[noreturn]] void raise(const std::string& context) const override {
        throw TransportError(context + ": " + text_, Retriable::no);
    }

private:
    std::string text_;
};

}  // namespace

std::shared_ptr<const DeliveryFailure> refusal(std::string text) {
    return std::make_shared<Refusal>(std::move(text));
}

void DeliveryReport::raise(std::string_view topic) const {
    if (failure) failure->raise("delivery to topic '" + std::string(topic) + "' failed");
}

void BatchDelivery::raise_for_failures() const {
    auto n = failed();
    if (n == 0) return;
    for (std::size_t i = 0; i < reports_.size(); ++i) {
        if (reports_[i].ok()) continue;
        std::string context = std::to_string(n) + " of " + std::to_string(size()) +
                              " messages failed; first failure: message " + std::to_string(i);
        if (i < messages_.size()) context += " to topic '" + messages_[i].topic + "'";
        reports_[i].failure->raise(context);
    }
}

std::shared_ptr<BatchDelivery> BatchDelivery::completed(std::vector<OutgoingMessage> messages,
                                                        std::vector<DeliveryReport> reports) {
    std::shared_ptr<BatchDelivery> batch(new BatchDelivery());
    batch->messages_ = std::move(messages);
    batch->reports_ = std::move(reports);
    batch->failed_.store(static_cast<std::size_t>(std::count_if(
        batch->reports_.begin(), batch->reports_.end(), [](const auto& r) { return !r.ok(); })));
    return batch;
}

std::shared_ptr<BatchDelivery> BatchDelivery::awaiting(std::vector<OutgoingMessage> messages) {
    auto batch = awaiting(messages.size());
    batch->messages_ = std::move(messages);
    return batch;
}

std::shared_ptr<BatchDelivery> BatchDelivery::awaiting(std::size_t count) {
    std::shared_ptr<BatchDelivery> batch(new BatchDelivery());
    batch->reports_.resize(count);
    batch->pending_.store(count);
    return batch;
}

void BatchDelivery::report(std::size_t index, DeliveryReport report) {
    if (!report.ok()) failed_.fetch_add(1, std::memory_order_relaxed);
    reports_.at(index) = std::move(report);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
}

}  // namespace postroom
