#pragma once
// Connects the backend to the topic model: sends a request, applies the answer to the latest
// request only, and keeps the status line ("loading…", the topic count or the error).
// Answers to superseded requests are dropped, whatever order they arrive in.
//
// Thread-safety: GUI thread only.

#include <QObject>
#include <QString>
#include <QVector>

#include "models/topicrow.h"

class BrokerBackend;
class TopicListModel;

class TopicsController final : public QObject {
    Q_OBJECT
public:
    TopicsController(BrokerBackend& backend, TopicListModel& model, QObject* parent = nullptr);

    QString status() const { return m_status; }
    // The request whose answer will be applied; 0 when none is outstanding.
    quint64 pendingRequestId() const { return m_pendingRequestId; }

public slots:
    void refresh(const QString& brokerUrl);
    // Connected to the backend; public so tests can deliver answers in any order.
    void applyTopics(quint64 requestId, const QVector<TopicRow>& topics);
    void applyFailure(quint64 requestId, const QString& message);

signals:
    void statusChanged(const QString& status);
    void topicsApplied(int count);
    void loadFailed(const QString& message);

private:
    void setStatus(const QString& status);

    BrokerBackend& m_backend;
    TopicListModel& m_model;
    quint64 m_pendingRequestId = 0;
    QString m_brokerUrl;  // redacted: for the status line
    QString m_status;
};
