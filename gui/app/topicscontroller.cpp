#include "app/topicscontroller.h"

#include "backend/brokerbackend.h"
#include "models/topiclistmodel.h"
#include "postroom/redact.hpp"

TopicsController::TopicsController(BrokerBackend& backend, TopicListModel& model, QObject* parent)
    : QObject(parent), m_backend(backend), m_model(model) {
    connect(&m_backend, &BrokerBackend::topicsLoaded, this, &TopicsController::applyTopics);
    connect(&m_backend, &BrokerBackend::requestFailed, this, &TopicsController::applyFailure);
}

void TopicsController::refresh(const QString& brokerUrl) {
    m_brokerUrl = QString::fromStdString(postroom::redacted_url(brokerUrl.toStdString()));
    m_pendingRequestId = m_backend.requestTopics(brokerUrl);
    setStatus(tr("loading…"));
}

void TopicsController::applyTopics(quint64 requestId, const QVector<TopicRow>& topics) {
    if (requestId == 0 || requestId != m_pendingRequestId)
        return;  // stale: a newer request is outstanding
    m_pendingRequestId = 0;
    m_model.setTopics(topics);
    const auto count = static_cast<int>(topics.size());
    setStatus(count == 1 ? tr("1 topic on %1").arg(m_brokerUrl)
                         : tr("%1 topics on %2").arg(count).arg(m_brokerUrl));
    emit topicsApplied(count);
}

void TopicsController::applyFailure(quint64 requestId, const QString& message) {
    if (requestId == 0 || requestId != m_pendingRequestId) return;
    m_pendingRequestId = 0;
    m_model.setTopics({});
    setStatus(message);
    emit loadFailed(message);
}

void TopicsController::setStatus(const QString& status) {
    if (status == m_status) return;
    m_status = status;
    emit statusChanged(m_status);
}
