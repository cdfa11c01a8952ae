#include <hiredis/hiredis.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_set>
#include <utility>

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

// 128 random bits as 32 hex digits: names one transaction's claims.
std::string random_token() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    char out[33];
    std::snprintf(out, sizeof out, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                  static_cast<unsigned long long>(rng()));
    return out;
}

bool starts_with(std::string_view s, std::string_view p) {
    return s.substr(0, p.size()) == p;
}

// Claims marks in one command, so Redis runs it in one turn of its event loop (one fsync
// with appendfsync always; a pipeline of SET NX spans a turn per 16 KB read). A free key is
// claimed (1); a key whose transaction is gone (rolled back, or its lease ran out) is taken
// over (1); one whose transaction committed is a duplicate (0); one whose transaction is
// still open, or held by an earlier version's lease, is busy (2); one this transaction
// already holds stays so (3). Atomic, so two claimers
// never both take a key. KEYS: the transaction's record, then the marks; ARGV: the marks'
// value, the retention (ms), the records' key prefix, the lease (ms), "1" to open the record.
constexpr const char* claim_script = R"lua(
if ARGV[5] == '1' then redis.call('SET', KEYS[1], 'open', 'PX', ARGV[4]) end
local out = {}
for i = 2, #KEYS do
  local k = KEYS[i]
  local r = 1
  if not redis.call('SET', k, ARGV[1], 'NX', 'PX', ARGV[2]) then
    local v = redis.call('GET', k)
    r = 2
    if v == ARGV[1] then
      r = 3
    elseif string.sub(v, 1, 5) == 'done:' then
      r = 0
    elseif string.sub(v, 1, 3) == 'tx:' then
      local t = redis.call('GET', ARGV[3] .. string.sub(v, 4))
      if not t then r = 1 elseif string.sub(t, 1, 10) == 'committed:' then r = 0 end
    end
    if r == 1 then redis.call('SET', k, ARGV[1], 'PX', ARGV[2]) end
  end
  out[i - 1] = r
end
return out
)lua";

// Compare-and-delete of marks: gives back the keys this transaction still holds.
constexpr const char* release_script = R"lua(
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then n = n + redis.call('DEL', k) end
end
return n
)lua";

// Takes the lease again for a transaction whose record expired, if no other transaction took
// any of its claims meanwhile. KEYS: the record, then the marks; ARGV: the marks' value, the
// lease (ms).
constexpr const char* renew_script = R"lua(
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[1] then return 0 end
end
redis.call('SET', KEYS[1], 'open', 'PX', ARGV[2])
return 1
)lua";

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
    // The record of one transaction: "open" while it runs (the lease as TTL), then
    // "committed:<ms>" (the retention as TTL); gone = rolled back or abandoned.
    std::string record_prefix() const { return prefix + "transaction:"; }

    // Whether a mark's value means "applied". The caller holds `mutex`.
    bool applied(const redisReply* mark) {
        if (mark->type != REDIS_REPLY_STRING) return false;
        std::string_view value(mark->str, mark->len);
        if (starts_with(value, "done:")) return true;  // written by an earlier version
        if (!starts_with(value, "tx:")) return false;
        auto record = command({"GET", record_prefix() + std::string(value.substr(3))});
        return record->type == REDIS_REPLY_STRING &&
               starts_with(std::string_view(record->str, record->len), "committed:");
    }
};

namespace {

// A claim writes the mark once, as "tx:<token>" with the retention as TTL, next to the
// transaction's record ("open", with the lease as TTL). Commit turns only the record into
// "committed:<ms>", in the MULTI/EXEC of the queued commands: one write per event, and the
// marks, the record and the effects apply together or not at all.
class RedisTransaction final : public Transaction {
public:
    explicit RedisTransaction(std::shared_ptr<RedisStore::Impl> impl)
        : impl_(std::move(impl)),
          token_(random_token()),
          value_("tx:" + token_),
          record_(impl_->record_prefix() + token_) {}
    ~RedisTransaction() override { rollback(); }

    bool claim(std::string_view scope, std::string_view k) override {
        return claim_batch(scope, {std::string(k)}).front();
    }

    // One script call for the batch's distinct keys (and the transaction's record, on the
    // first claim). Busy keys are asked for again until their holder commits, rolls back or
    // its lease runs out.
    std::vector<bool> claim_batch(std::string_view scope,
                                  const std::vector<std::string>& keys) override {
        start_claim_batch(scope, keys);
        return finish_claim_batch();
    }

    // Sends the script calls; finish_claim_batch() reads their replies.
    void start_claim_batch(std::string_view scope, const std::vector<std::string>& keys) override {
        require_open();
        if (claim_) throw UsageError("a claim is already in flight in this transaction");
        claim_.emplace();
        claim_->scope = scope;
        claim_->keys = keys;
        claim_->claimed.assign(keys.size(), false);
        std::unordered_set<std::string_view> seen;
        std::vector<std::size_t> distinct;  // index of each distinct key's first occurrence
        for (std::size_t i = 0; i < keys.size(); ++i)
            if (seen.insert(keys[i]).second) distinct.push_back(i);
        send_claims(distinct);
    }

    std::vector<bool> finish_claim_batch() override {
        if (!claim_) throw UsageError("no claim in flight in this transaction");
        const auto give_up =
            std::chrono::steady_clock::now() + impl_->lease + std::chrono::seconds(1);
        try {
            for (;;) {
                auto busy = collect_claims();
                if (busy.empty()) break;
                // Another transaction holds these: wait for its outcome (or its lease).
                if (std::chrono::steady_clock::now() > give_up)
                    throw StorageError(
                        "claim of '" + impl_->key(claim_->scope, claim_->keys[busy.front()]) +
                            "' is held by another worker longer than the lease; retry later",
                        Retriable::yes);
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
                send_claims(busy);
            }
        } catch (...) {
            claim_.reset();
            throw;
        }
        auto claimed = std::move(claim_->claimed);
        claim_.reset();
        return claimed;
    }

    void unclaim(std::string_view scope, const std::vector<std::string>& keys) override {
        require_open();
        std::vector<std::string> args{"EVAL", release_script, "0"};
        for (const auto& k : keys) {
            auto key = impl_->key(scope, k);
            auto it = std::find(claimed_.begin(), claimed_.end(), key);
            if (it == claimed_.end()) continue;
            claimed_.erase(it);
            args.push_back(std::move(key));
        }
        if (args.size() == 3) return;
        args[2] = std::to_string(args.size() - 3);
        args.push_back(value_);
        std::lock_guard lock(impl_->mutex);
        impl_->command(args);
    }

    void savepoint() override { savepoint_ = queued_.size(); }
    void rollback_to_savepoint() override { queued_.resize(std::min(savepoint_, queued_.size())); }

    void enqueue_command(std::vector<std::string> command) override {
        require_open();
        if (command.empty()) throw UsageError("enqueue_command needs a Redis command name");
        queued_.push_back(std::move(command));
    }

    // The record turns "committed" and the queued commands run in one MULTI/EXEC: all of
    // them apply, or none. WATCH on the record refuses the commit if the lease ran out first
    // (another worker may have taken the claims over).
    void commit() override {
        if (start_commit()) finish_commit();
    }

    // Sends the MULTI/EXEC; its reply is read by finish_commit(). Whatever is sent on the
    // store's connection afterwards (the next batch's claim) runs after it.
    bool start_commit() override {
        require_open();
        open_ = false;
        std::lock_guard lock(impl_->mutex);
        if (opened_ && claimed_.empty() && queued_.empty()) {
            // Every claim was a duplicate (or given back): nothing to commit.
            impl_->pipeline({{"DEL", record_}});
            return false;
        }
        if (opened_) watch_open_record();
        std::vector<std::vector<std::string>> commands;
        commands.push_back({"MULTI"});
        if (opened_)
            commands.push_back({"SET", record_, "committed:" + std::to_string(now_ms()), "PX",
                                std::to_string(impl_->retention.count())});
        first_queued_ = commands.size();
        for (auto& c : queued_) commands.push_back(std::move(c));
        commands.push_back({"EXEC"});
        for (const auto& c : commands) command_names_.push_back(c.front());
        try {
            sent_ = impl_->connection.send(commands);
        } catch (const TransportError& e) {
            throw StorageError(e.what(), Retriable::yes);
        }
        return true;
    }

    void finish_commit() override {
        if (!sent_) return;
        auto sent = std::exchange(sent_, nullptr);
        std::lock_guard lock(impl_->mutex);
        std::vector<ReplyHandle> replies;
        try {
            replies = impl_->connection.collect(*sent);
        } catch (const TransportError& e) {
            throw StorageError(e.what(), Retriable::yes);
        }
        const auto* exec = replies.back().get();
        if (exec->type == REDIS_REPLY_ERROR) {
            // EXECABORT: a queued command was rejected, so nothing was applied.
            std::string why;
            for (std::size_t i = 1; i + 1 < replies.size(); ++i)
                if (replies[i]->type == REDIS_REPLY_ERROR) {
                    why = " ('" + command_names_[i] +
                          "': " + std::string(replies[i]->str, replies[i]->len) + ")";
                    break;
                }
            release_all();
            throw StorageError(
                impl_->where() + ": the transaction was refused" + why + "; nothing was applied",
                Retriable::no);
        }
        if (exec->type == REDIS_REPLY_NIL)
            throw StorageError(impl_->where() +
                                   ": the claims' lease ran out during the commit; nothing "
                                   "was applied",
                               Retriable::yes);
        for (std::size_t i = first_queued_ - 1;
             exec->type == REDIS_REPLY_ARRAY && i < exec->elements; ++i)
            if (exec->element[i]->type == REDIS_REPLY_ERROR)
                throw StorageError(impl_->where() + ": '" + command_names_[i + 1] +
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
            release_all();
        } catch (...) {
            // The record expires with its lease, and the claims can be taken over then.
        }
        claimed_.clear();
    }

private:
    // A claim in flight: the script calls sent, whose replies are not read yet.
    struct ClaimCall {
        std::shared_ptr<redis::detail::SentCommands> sent;
        std::vector<std::size_t> indexes;  // into keys
        std::vector<std::string> marks;    // their mark keys
    };
    struct Claim {
        std::string scope;
        std::vector<std::string> keys;
        std::vector<bool> claimed;
        std::vector<ClaimCall> calls;
    };

    // Sends one script call per 1,000 of keys[indexes] (a script holds the server while it
    // runs).
    void send_claims(const std::vector<std::size_t>& indexes) {
        constexpr std::size_t keys_per_call = 1000;
        const auto retention = std::to_string(impl_->retention.count());
        std::lock_guard lock(impl_->mutex);
        for (std::size_t from = 0; from < indexes.size(); from += keys_per_call) {
            const auto to = std::min(indexes.size(), from + keys_per_call);
            std::vector<std::string> args{"EVAL", claim_script, std::to_string(to - from + 1),
                                          record_};
            args.reserve(to - from + 9);
            ClaimCall call;
            for (auto k = from; k < to; ++k) {
                args.push_back(impl_->key(claim_->scope, claim_->keys[indexes[k]]));
                call.indexes.push_back(indexes[k]);
            }
            args.insert(args.end(), {value_, retention, impl_->record_prefix(), lease_ms(),
                                     opened_ ? "0" : "1"});
            opened_ = true;  // the first call opens the record; calls run in order
            try {
                call.sent = impl_->connection.send({args});
            } catch (const TransportError& e) {
                throw StorageError(e.what(), Retriable::yes);
            }
            call.marks.assign(std::make_move_iterator(args.begin() + 4),
                              std::make_move_iterator(args.begin() + 4 + (to - from)));
            claim_->calls.push_back(std::move(call));
        }
    }

    // Reads the replies of the calls in flight; returns the indexes of busy keys.
    std::vector<std::size_t> collect_claims() {
        std::vector<std::size_t> busy;
        auto calls = std::move(claim_->calls);
        claim_->calls.clear();
        std::lock_guard lock(impl_->mutex);
        for (auto& call : calls) {
            ReplyHandle r;
            try {
                r = std::move(impl_->connection.collect(*call.sent).front());
            } catch (const TransportError& e) {
                throw StorageError(e.what(), Retriable::yes);
            }
            if (r->type == REDIS_REPLY_ERROR)
                throw StorageError(
                    impl_->where() + ": EVAL failed: " + redis::detail::text(r.get()),
                    Retriable::no);
            for (std::size_t k = 0; k < call.indexes.size(); ++k) {
                const auto outcome = r->element[k]->integer;
                if (outcome == 1) {
                    claim_->claimed[call.indexes[k]] = true;
                    claimed_.push_back(std::move(call.marks[k]));
                } else if (outcome == 3) {
                    claim_->claimed[call.indexes[k]] = true;
                } else if (outcome == 2) {
                    busy.push_back(call.indexes[k]);
                }
            }
        }
        return busy;
    }

    void require_open() const {
        if (!open_) throw UsageError("the store transaction is already committed or rolled back");
    }
    std::string lease_ms() const { return std::to_string(impl_->lease.count()); }
    // WATCHes the record, open: if the lease ran out but no other transaction took any claim
    // meanwhile, it is taken again; otherwise the commit is refused (the caller holds the mutex).
    void watch_open_record() {
        for (int round = 0; round < 2; ++round) {
            auto check = impl_->pipeline({{"WATCH", record_}, {"GET", record_}});
            const auto* record = check[1].get();
            if (record->type == REDIS_REPLY_STRING &&
                std::string_view(record->str, record->len) == "open")
                return;
            impl_->pipeline({{"UNWATCH"}});
            std::vector<std::string> renew{"EVAL", renew_script,
                                           std::to_string(claimed_.size() + 1), record_};
            renew.insert(renew.end(), claimed_.begin(), claimed_.end());
            renew.insert(renew.end(), {value_, lease_ms()});
            if (impl_->command(renew)->integer != 1) break;
        }
        throw StorageError(impl_->where() + ": the claims outlived their lease (" +
                               std::to_string(impl_->lease.count()) +
                               " ms) and another worker took some of them over; nothing was "
                               "applied (give the store a longer lease than a batch takes)",
                           Retriable::yes);
    }
    // Drops the record and gives back the marks (the caller holds the mutex): the claims
    // are free at once, not only when the lease runs out.
    void release_all() {
        if (!opened_) return;
        std::vector<std::string> release{"EVAL", release_script, std::to_string(claimed_.size())};
        release.insert(release.end(), claimed_.begin(), claimed_.end());
        release.push_back(value_);
        impl_->pipeline({std::move(release), {"DEL", record_}});
    }
    std::shared_ptr<RedisStore::Impl> impl_;
    std::optional<Claim> claim_;
    std::string token_, value_, record_;
    std::vector<std::string> claimed_;
    std::vector<std::vector<std::string>> queued_;  // enqueue_command(), run at commit
    // The commit in flight: its commands' names (for errors), where the queued ones start.
    std::shared_ptr<redis::detail::SentCommands> sent_;
    std::vector<std::string> command_names_;
    std::size_t first_queued_ = 0;
    std::size_t savepoint_ = 0;
    bool open_ = true;
    bool opened_ = false;  // the record was written
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
    auto mark = impl_->command({"GET", impl_->key(scope, key)});
    return impl_->applied(mark.get());
}

// A page of keys at a time: their values in one MGET, the records they name in another, the
// deletions in one pipeline. Marks of transactions committed before the limit go; records
// expire by themselves (their TTL is the retention).
std::size_t RedisStore::purge_older_than(std::chrono::seconds age) {
    const int64_t limit =
        now_ms() - std::chrono::duration_cast<std::chrono::milliseconds>(age).count();
    auto committed_at = [](const redisReply* r, std::string_view tag) -> std::optional<int64_t> {
        if (r->type != REDIS_REPLY_STRING) return std::nullopt;
        std::string_view value(r->str, r->len);
        if (!starts_with(value, tag)) return std::nullopt;
        int64_t at = 0;
        std::from_chars(value.data() + tag.size(), value.data() + value.size(), at);
        return at;
    };
    std::lock_guard lock(impl_->mutex);
    std::size_t purged = 0;
    std::string cursor = "0";
    do {
        auto page = impl_->command({"SCAN", cursor, "MATCH", impl_->prefix + "*", "COUNT", "500"});
        cursor.assign(page->element[0]->str, page->element[0]->len);
        const auto* found = page->element[1];
        if (found->elements == 0) continue;
        std::vector<std::string> mget{"MGET"};
        for (std::size_t i = 0; i < found->elements; ++i)
            mget.emplace_back(found->element[i]->str, found->element[i]->len);
        auto values = impl_->command(mget);
        std::vector<std::string> records{"MGET"};
        std::vector<std::size_t> record_of(found->elements, 0);  // 0: no record
        for (std::size_t i = 0; i < values->elements; ++i) {
            const auto* v = values->element[i];
            if (v->type == REDIS_REPLY_STRING &&
                starts_with(std::string_view(v->str, v->len), "tx:")) {
                records.push_back(impl_->record_prefix() + std::string(v->str + 3, v->len - 3));
                record_of[i] = records.size() - 1;
            }
        }
        ReplyHandle states;
        if (records.size() > 1) states = impl_->command(records);
        std::vector<std::vector<std::string>> deletions;
        for (std::size_t i = 0; i < values->elements; ++i) {
            auto at = record_of[i] ? committed_at(states->element[record_of[i] - 1], "committed:")
                                   : committed_at(values->element[i], "done:");
            if (at && *at < limit) deletions.push_back({"DEL", mget[i + 1]});
        }
        if (deletions.empty()) continue;
        for (const auto& r : impl_->pipeline(deletions))
            if (r->type == REDIS_REPLY_INTEGER) purged += static_cast<std::size_t>(r->integer);
    } while (cursor != "0");
    return purged;
}

}  // namespace postroom::stores
