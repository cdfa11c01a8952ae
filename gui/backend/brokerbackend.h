#pragma once
// BrokerBackend owns postroom's core clients (a kafka::Admin, or a redis::StreamAdmin, per
// broker URL) on a worker
// thread. Requests return a request id at once; the I/O runs on the worker thread and the
// answer comes back as an immutable snapshot through a queued signal, emitted on the thread
// the backend lives on. Receivers drop answers to requests they no longer wait for.
//
// Thread-safety: create it and call requestTopics() on one thread (the GUI thread); its
// signals are emitted on that thread.

#include <QObject>
#include <QString>
#include <QThread>
#include <QVector>

#include <atomic>
#include <memory>

#include "models/topicrow.h"

class BrokerBackend final : public QObject {
    Q_OBJECT
public:
    explicit BrokerBackend(QObject* parent = nullptr);
    ~BrokerBackend() override;

    // Lists the topics of brokerUrl (kafka://host:port, embedded://[name]; the streams of
    // redis://host:port/db). Answered by
    // topicsLoaded or requestFailed with the returned id.
    Q_INVOKABLE quint64 requestTopics(const QString& brokerUrl);

signals:
    void topicsLoaded(quint64 requestId, const QVector<TopicRow>& topics);
    // message says what went wrong and what to do about it.
    void requestFailed(quint64 requestId, const QString& message);

private:
    void reportFailure(quint64 requestId, const QString& message);

    struct Clients;
    std::unique_ptr<Clients> m_clients;  // touched on m_thread only
    QThread m_thread;
    QObject m_worker;  // lives on m_thread: the context of the work posted there
    std::atomic<quint64> m_lastRequestId{0};
};
