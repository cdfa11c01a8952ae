#include "postroom/message.hpp"

namespace postroom {

namespace {

std::optional<std::string> owned(const std::optional<std::string_view>& v) {
    return v ? std::optional<std::string>(std::in_place, *v) : std::nullopt;
}

std::optional<std::string_view> viewed(const std::optional<std::string>& v) {
    return v ? std::optional<std::string_view>(*v) : std::nullopt;
}

Headers owned(std::span<const HeaderView> headers) {
    Headers out;
    out.reserve(headers.size());
    for (const auto& h : headers) out.push_back({std::string(h.name), owned(h.value)});
    return out;
}

struct OwnedMessages final : MessageBatch::Storage {
    std::vector<Message> messages;
};

}  // namespace

const Header* find_header(const Headers& headers, std::string_view name) noexcept {
    for (const auto& h : headers)
        if (h.name == name) return &h;
    return nullptr;
}

const HeaderView* MessageView::find_header(std::string_view name) const noexcept {
    for (const auto& h : headers)
        if (h.name == name) return &h;
    return nullptr;
}

Message to_message(const MessageView& v) {
    Message m;
    m.topic = v.topic;
    m.partition = v.partition;
    m.offset = v.offset;
    m.key = owned(v.key);
    m.value = owned(v.value);
    m.headers = owned(v.headers);
    m.timestamp_ms = v.timestamp_ms;
    m.id = v.id;
    return m;
}

OutgoingMessage to_outgoing_message(const OutgoingView& v) {
    return {std::string(v.topic), owned(v.key), owned(v.value), owned(v.headers), v.partition};
}

MessageBatch::MessageBatch(std::vector<Message> messages) {
    auto storage = std::make_unique<OwnedMessages>();
    storage->messages = std::move(messages);
    std::size_t header_count = 0;
    for (const auto& m : storage->messages) header_count += m.headers.size();
    headers_.reserve(header_count);  // never reallocated: the views' spans point into it
    views_.reserve(storage->messages.size());
    for (const auto& m : storage->messages) {
        const auto first = headers_.size();
        for (const auto& h : m.headers) headers_.push_back({h.name, viewed(h.value)});
        MessageView v;
        v.topic = m.topic;
        v.partition = m.partition;
        v.offset = m.offset;
        v.key = viewed(m.key);
        v.value = viewed(m.value);
        v.headers = std::span<const HeaderView>(headers_).subspan(first, m.headers.size());
        v.timestamp_ms = m.timestamp_ms;
        v.id = m.id;
        views_.push_back(v);
    }
    storage_ = std::move(storage);
}

MessageBatch::MessageBatch(std::unique_ptr<Storage> storage, std::vector<MessageView> views,
                           std::vector<HeaderView> headers)
    : storage_(std::move(storage)), headers_(std::move(headers)), views_(std::move(views)) {}

}  // namespace postroom
