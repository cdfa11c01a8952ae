#pragma once
// Reading a dead-letter topic (or the ledger) to its end, in batches of views (MessageBatch).
// Kafka: a manual assignment from each partition's low to its high watermark at the start, in
// a throwaway group that never commits; Redis: XRANGE pages. scan_on_reader_thread() reads and
// prepares (decodes) batches on a thread of its own, at most 8 ahead of the calling thread.

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "clients.hpp"
#include "postroom/dlq/dead_letters.hpp"
#include "postroom/message.hpp"

namespace postroom::dlq::detail {

using Progress = std::function<void(int64_t, int64_t)>;

// Hands what a reader thread prepares over to the thread that consumes it, at most `depth`
// items ahead.
template <class T>
class Handover {
public:
    explicit Handover(std::size_t depth) : depth_(depth) {}

    // Reader side. False once the consumer stopped: the reader should stop too.
    bool put(T&& item) {
        std::unique_lock lock(mutex_);
        space_.wait(lock, [&] { return stopped_ || items_.size() < depth_; });
        if (stopped_) return false;
        items_.push_back(std::move(item));
        ready_.notify_one();
        return true;
    }
    void finish(std::exception_ptr error) {
        std::lock_guard lock(mutex_);
        finished_ = true;
        error_ = std::move(error);
        ready_.notify_one();
    }

    // Consumer side. False when the reader finished and nothing is left (rethrows what the
    // reader threw).
    bool take(T& item) {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return finished_ || !items_.empty(); });
        if (items_.empty()) {
            if (error_) std::rethrow_exception(error_);
            return false;
        }
        item = std::move(items_.front());
        items_.pop_front();
        space_.notify_one();
        return true;
    }
    void stop() {
        std::lock_guard lock(mutex_);
        stopped_ = true;
        space_.notify_all();
    }

private:
    std::size_t depth_;
    std::mutex mutex_;
    std::condition_variable ready_, space_;
    std::deque<T> items_;
    bool finished_ = false, stopped_ = false;
    std::exception_ptr error_;
};

// A batch of records with what decoding found in each (views into the batch).
struct DecodedBatch {
    MessageBatch records;
    std::vector<LetterFacts> facts;
    std::vector<std::array<char, 16>> fingerprints;

    explicit DecodedBatch(MessageBatch&& batch);
    DecodedBatch() = default;
    std::size_t size() const noexcept { return facts.size(); }
    LetterView letter(std::size_t i) const {
        return {records.views()[i], facts[i], {fingerprints[i].data(), fingerprints[i].size()}};
    }
};

// Kafka: (partition, low, high) of every partition with records. A topic that does not exist
// has none, or is reported (Clients::missing) when `required`.
std::vector<std::tuple<int32_t, int64_t, int64_t>> extent(Clients& clients,
                                                          const std::string& topic, bool required);

// Reads every record of `topic` (Kafka) in batches, oldest first per partition.
// `visit` returning false stops the read.
void scan_kafka(Clients& clients, const std::string& topic, bool required,
                const std::function<bool(MessageBatch&&)>& visit, const Progress& progress);

void scan_redis(Clients& clients, const std::string& stream, bool required,
                const std::function<bool(MessageBatch&&)>& visit, const Progress& progress);

void scan(Clients& clients, const std::string& topic, bool required,
          const std::function<bool(MessageBatch&&)>& visit, const Progress& progress);

// scan() record by record, each copied into a Message.
void scan_messages(Clients& clients, const std::string& topic, bool required,
                   const std::function<bool(Message&&)>& visit, const Progress& progress);

// scan() on a thread of its own: `prepare` runs there on each batch, `visit` on the
// calling thread, so reading and decoding overlap with what `visit` does. `visit`
// returning false stops the read.
template <class T>
void scan_on_reader_thread(Clients& clients, const std::string& topic, bool required,
                           const std::function<T(MessageBatch&&)>& prepare,
                           const std::function<bool(T&&)>& visit) {
    if (!clients.redis) clients.the_admin();  // created here: the reader uses it too
    Handover<T> handover(8);
    std::thread reader([&] {
        std::exception_ptr error;
        try {
            scan(clients, topic, required,
                 [&](MessageBatch&& batch) { return handover.put(prepare(std::move(batch))); }, {});
        } catch (...) {
            error = std::current_exception();
        }
        handover.finish(std::move(error));
    });
    struct Join {
        Handover<T>& handover;
        std::thread& reader;
        ~Join() {
            handover.stop();
            reader.join();
        }
    } join{handover, reader};
    T item;
    while (handover.take(item))
        if (!visit(std::move(item))) return;
}

}  // namespace postroom::dlq::detail
