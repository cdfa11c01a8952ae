#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>

#include "postroom/error.hpp"
#include "postroom/stores/store.hpp"

namespace postroom::stores {

using Clock = std::chrono::steady_clock;
using Key = std::pair<std::string, std::string>;

struct MemoryStore::State {
    std::size_t capacity;
    std::mutex mutex;
    std::condition_variable released;
    std::map<Key, Clock::time_point> done;
    std::deque<Key> order;  // insertion order, for eviction beyond capacity
    std::set<Key> claimed;  // held by open transactions

    void evict() {
        while (done.size() > capacity && !order.empty()) {
            done.erase(order.front());
            order.pop_front();
        }
    }
};

namespace {

class MemoryTransaction final : public Transaction {
public:
    explicit MemoryTransaction(std::shared_ptr<MemoryStore::State> state)
        : state_(std::move(state)) {}
    ~MemoryTransaction() override { rollback(); }

    bool claim(std::string_view scope, std::string_view key) override {
        if (finished_) throw UsageError("transaction already finished");
        Key k{std::string(scope), std::string(key)};
        std::unique_lock lock(state_->mutex);
        if (std::find(mine_.begin(), mine_.end(), k) != mine_.end()) return false;
        // Another transaction holds this key: wait for its outcome, like a row lock.
        state_->released.wait(lock, [&] { return !state_->claimed.count(k); });
        if (state_->done.count(k)) return false;
        state_->claimed.insert(k);
        mine_.push_back(std::move(k));
        return true;
    }

    void unclaim(std::string_view scope, const std::vector<std::string>& keys) override {
        if (finished_) throw UsageError("transaction already finished");
        std::lock_guard lock(state_->mutex);
        for (const auto& key : keys) {
            Key k{std::string(scope), key};
            auto it = std::find(mine_.begin(), mine_.end(), k);
            if (it == mine_.end()) continue;
            mine_.erase(it);
            state_->claimed.erase(k);
        }
        state_->released.notify_all();
    }

    void commit() override {
        if (finished_) throw UsageError("transaction already finished");
        std::lock_guard lock(state_->mutex);
        auto now = Clock::now();
        for (auto& k : mine_) {
            state_->claimed.erase(k);
            if (state_->done.emplace(k, now).second) state_->order.push_back(k);
        }
        state_->evict();
        mine_.clear();
        finished_ = true;
        state_->released.notify_all();
    }

    void rollback() noexcept override {
        if (finished_) return;
        std::lock_guard lock(state_->mutex);
        for (auto& k : mine_) state_->claimed.erase(k);
        mine_.clear();
        finished_ = true;
        state_->released.notify_all();
    }

private:
    std::shared_ptr<MemoryStore::State> state_;
    std::vector<Key> mine_;
    bool finished_ = false;
};

}  // namespace

MemoryStore::MemoryStore(std::size_t capacity) : state_(std::make_shared<State>()) {
    if (capacity == 0) throw ConfigurationError("MemoryStore capacity must be positive");
    state_->capacity = capacity;
}

MemoryStore::~MemoryStore() = default;

std::unique_ptr<Transaction> MemoryStore::begin() {
    return std::make_unique<MemoryTransaction>(state_);
}

bool MemoryStore::contains(std::string_view scope, std::string_view key) {
    std::lock_guard lock(state_->mutex);
    return state_->done.count({std::string(scope), std::string(key)}) > 0;
}

std::size_t MemoryStore::purge_older_than(std::chrono::seconds age) {
    std::lock_guard lock(state_->mutex);
    auto limit = Clock::now() - age;
    std::size_t n = 0;
    for (auto it = state_->order.begin(); it != state_->order.end();) {
        auto d = state_->done.find(*it);
        if (d != state_->done.end() && d->second < limit) {
            state_->done.erase(d);
            it = state_->order.erase(it);
            ++n;
        } else {
            ++it;
        }
    }
    return n;
}

std::size_t MemoryStore::size() const {
    std::lock_guard lock(state_->mutex);
    return state_->done.size();
}

}  // namespace postroom::stores
