#include <hiredis/hiredis.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_set>

#include "../redis/connection.hpp"
#include "postroom/error.hpp"
#include "postroom/stores/store.hpp"

namespace postroom::stores {

namespace {

using redis::detail::ReplyHandle;

int64_t now_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string random_token() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    return std::to_string(rng()) + std::to_string(rng());
}

// Compare-and-delete: releases a claim only if this transaction still holds it.
constexpr const char* release_script =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end";

}  // namespace

struct RedisStore::Impl {
    explicit Impl(redis::detail::Address address) : connection(std::move(address)) {}
    std::string prefix;
    std::chrono::milliseconds retention{};
    std::chrono::milliseconds lease{};
    std::mutex mutex;
    redis::detail::Connection connection;

    std::string where() const { return connection.address().where(); }

    // One command; the caller holds `mutex`. An error reply is a non-retriable StorageError.
    ReplyHandle command(const std::vector<std::string>& args) {
        auto replies = pipeline({args});
        if (replies.front()->type == REDIS_REPLY_ERROR)
            throw StorageError(where() + ": " + args.front() +
                                   " failed: " + redis::detail::text(replies.front().get()),
                               Retriable::no);
        return std::move(replies.front());
    }

    // Sends `commands` in one round trip; returns their replies in order (error replies
    // included: the caller decides). The caller holds `mutex`.
    std::vector<ReplyHandle> pipeline(const std::vector<std::vector<std::string>>& commands) {
        try {
            return connection.pipeline(commands);
        } catch (const TransportError& e) {
            throw StorageError(e.what(), Retriable::yes);
        }
    }

    std::string key(std::string_view scope, std::string_view k) const {
        return prefix + std::string(scope) + ":" + std::string(k);
    }
};

namespace {

class RedisTransaction final : public Transaction {
public:
    explicit RedisTransaction(std::shared_ptr<RedisStore::Impl> impl)
        : impl_(std::move(impl)), token_("pending:" + random_token()) {}
    ~RedisTransaction() override { rollback(); }

    bool claim(std::string_view scope, std::string_view k) override {
        require_open();
        auto key = impl_->key(scope, k);
        auto give_up = std::chrono::steady_clock::now() + impl_->lease + std::chrono::seconds(1);
        for (;;) {
            {
                std::lock_guard lock(impl_->mutex);
                auto set = impl_->command(
                    {"SET", key, token_, "NX", "PX", std::to_string(impl_->lease.count())});
                if (set->type == REDIS_REPLY_STATUS) {
                    claimed_.push_back(key);
                    return true;
                }
                auto get = impl_->command({"GET", key});
                if (get->type == REDIS_REPLY_STRING &&
                    std::string_view(get->str, get->len).rfind("done:", 0) == 0)
                    return false;
            }
            // Another transaction holds the claim: wait for its outcome (or its lease).
            if (std::chrono::steady_clock::now() > give_up)
                throw StorageError("claim of '" + key +
                                       "' is held by another worker longer "
                                       "than the lease; retry later",
                                   Retriable::yes);
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }

    // One pipeline of SET NX for the whole batch; keys held by another worker then wait
    // for its outcome one by one, like claim().
    std::vector<bool> claim_batch(std::string_view scope,
                                  const std::vector<std::string>& keys) override {
        require_open();
        std::vector<bool> claimed(keys.size(), false);
        std::vector<std::size_t> first;  // index of each distinct key's first occurrence
        std::unordered_set<std::string_view> seen;
        for (std::size_t i = 0; i < keys.size(); ++i)
            if (seen.insert(keys[i]).second) first.push_back(i);
        std::vector<std::vector<std::string>> commands;
        for (auto i : first)
            commands.push_back({"SET", impl_->key(scope, keys[i]), token_, "NX", "PX",
                                std::to_string(impl_->lease.count())});
        std::vector<std::size_t> contested;
        {
            std::lock_guard lock(impl_->mutex);
            auto replies = impl_->pipeline(commands);
            for (std::size_t n = 0; n < first.size(); ++n) {
                const auto* r = replies[n].get();
                if (r->type == REDIS_REPLY_ERROR)
                    throw StorageError(
                        impl_->where() + ": SET NX failed: " + std::string(r->str, r->len),
                        Retriable::no);
                if (r->type == REDIS_REPLY_STATUS) {
                    claimed[first[n]] = true;
                    claimed_.push_back(commands[n][1]);
                } else {
                    contested.push_back(first[n]);
                }
            }
        }
        for (auto i : contested) claimed[i] = claim(scope, keys[i]);
        return claimed;
    }

    void unclaim(std::string_view scope, const std::vector<std::string>& keys) override {
        require_open();
        std::vector<std::vector<std::string>> commands;
        for (const auto& k : keys) {
            auto key = impl_->key(scope, k);
            auto it = std::find(claimed_.begin(), claimed_.end(), key);
            if (it == claimed_.end()) continue;
            claimed_.erase(it);
            commands.push_back({"EVAL", release_script, "1", key, token_});
        }
        if (commands.empty()) return;
        std::lock_guard lock(impl_->mutex);
        impl_->pipeline(commands);
    }

    void savepoint() override { savepoint_ = queued_.size(); }
    void rollback_to_savepoint() override { queued_.resize(std::min(savepoint_, queued_.size())); }

    void enqueue_command(std::vector<std::string> command) override {
        require_open();
        if (command.empty()) throw UsageError("enqueue_command needs a Redis command name");
        queued_.push_back(std::move(command));
    }

    // The marks and the queued commands in one MULTI/EXEC: all of them apply, or none.
    void commit() override {
        require_open();
        open_ = false;
        std::vector<std::vector<std::string>> commands;
        commands.push_back({"MULTI"});
        const std::string value = "done:" + std::to_string(now_ms());
        for (const auto& key : claimed_)
            commands.push_back({"SET", key, value, "PX", std::to_string(impl_->retention.count())});
        for (auto& c : queued_) commands.push_back(std::move(c));
        commands.push_back({"EXEC"});
        std::lock_guard lock(impl_->mutex);
        auto replies = impl_->pipeline(commands);
        const auto* exec = replies.back().get();
        if (exec->type == REDIS_REPLY_ERROR) {
            // EXECABORT: a queued command was rejected, so nothing was applied.
            std::string why;
            for (std::size_t i = 1; i + 1 < replies.size(); ++i)
                if (replies[i]->type == REDIS_REPLY_ERROR) {
                    why = " ('" + commands[i].front() +
                          "': " + std::string(replies[i]->str, replies[i]->len) + ")";
                    break;
                }
            throw StorageError(
                impl_->where() + ": the transaction was refused" + why + "; nothing was applied",
                Retriable::no);
        }
        for (std::size_t i = 0; exec->type == REDIS_REPLY_ARRAY && i < exec->elements; ++i)
            if (exec->element[i]->type == REDIS_REPLY_ERROR)
                throw StorageError(impl_->where() + ": '" + commands[i + 1].front() +
                                       "' failed inside the transaction: " +
                                       std::string(exec->element[i]->str, exec->element[i]->len) +
                                       "; the other commands and the dedupe marks were applied",
                                   Retriable::no);
        claimed_.clear();
        queued_.clear();
    }

    void rollback() noexcept override {
        if (!open_) return;
        open_ = false;
        try {
            std::lock_guard lock(impl_->mutex);
            for (const auto& key : claimed_)
                impl_->command({"EVAL", release_script, "1", key, token_});
        } catch (...) {
            // The claim expires with its lease.
        }
        claimed_.clear();
    }

private:
    void require_open() const {
        if (!open_) throw UsageError("the store transaction is already committed or rolled back");
    }
    std::shared_ptr<RedisStore::Impl> impl_;
    std::string token_;
    std::vector<std::string> claimed_;
    std::vector<std::vector<std::string>> queued_;  // enqueue_command(), run at commit
    std::size_t savepoint_ = 0;
    bool open_ = true;
};

}  // namespace

RedisStore::RedisStore(const std::string& url, std::chrono::seconds retention,
                       const std::string& prefix, std::chrono::milliseconds lease)
    : impl_(std::make_shared<Impl>(redis::detail::Address::from_url(url, "RedisStore"))) {
    if (retention.count() <= 0) throw ConfigurationError("RedisStore retention must be positive");
    impl_->prefix = prefix;
    impl_->retention = std::chrono::duration_cast<std::chrono::milliseconds>(retention);
    impl_->lease = lease;
    std::lock_guard lock(impl_->mutex);
    impl_->command({"PING"});
}

RedisStore::~RedisStore() = default;

std::unique_ptr<Transaction> RedisStore::begin() {
    return std::make_unique<RedisTransaction>(impl_);
}

bool RedisStore::contains(std::string_view scope, std::string_view key) {
    std::lock_guard lock(impl_->mutex);
    auto r = impl_->command({"GET", impl_->key(scope, key)});
    return r->type == REDIS_REPLY_STRING && std::string_view(r->str, r->len).rfind("done:", 0) == 0;
}

std::size_t RedisStore::purge_older_than(std::chrono::seconds age) {
    const int64_t limit =
        now_ms() - std::chrono::duration_cast<std::chrono::milliseconds>(age).count();
    std::lock_guard lock(impl_->mutex);
    std::size_t purged = 0;
    std::string cursor = "0";
    do {
        auto r = impl_->command({"SCAN", cursor, "MATCH", impl_->prefix + "*", "COUNT", "500"});
        cursor.assign(r->element[0]->str, r->element[0]->len);
        const auto* keys = r->element[1];
        for (size_t i = 0; i < keys->elements; ++i) {
            std::string key(keys->element[i]->str, keys->element[i]->len);
            auto v = impl_->command({"GET", key});
            if (v->type != REDIS_REPLY_STRING) continue;
            std::string_view value(v->str, v->len);
            if (value.rfind("done:", 0) != 0) continue;
            int64_t at = 0;
            std::from_chars(value.data() + 5, value.data() + value.size(), at);
            if (at < limit)
                purged += static_cast<std::size_t>(impl_->command({"DEL", key})->integer);
        }
    } while (cursor != "0");
    return purged;
}

}  // namespace postroom::stores
