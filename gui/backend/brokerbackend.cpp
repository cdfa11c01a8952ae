#include "backend/brokerbackend.h"

#include <chrono>
#include <map>
#include <string>

#include "postroom/broker_url.hpp"
#include "postroom/error.hpp"
#include "postroom/kafka/admin.hpp"
#include "postroom/redis/streams.hpp"

struct BrokerBackend::Clients {
    std::map<std::string, std::unique_ptr<postroom::kafka::Admin>> admins;

    postroom::kafka::Admin& admin(const std::string& brokerUrl) {
        auto& slot = admins[brokerUrl];
        if (!slot) {
            postroom::kafka::AdminConfig config;
            config.broker_url = brokerUrl;
            config.client_id = "postroom-inspector";
            config.timeout = std::chrono::seconds(10);
            try {
                slot = std::make_unique<postroom::kafka::Admin>(std::move(config));
            } catch (...) {
                admins.erase(brokerUrl);
                throw;
            }
        }
        return *slot;
    }

    std::map<std::string, std::unique_ptr<postroom::redis::StreamAdmin>> streamAdmins;

    // Topics, or on a redis:// URL the streams (one partition each).
    std::vector<postroom::TopicInfo> topics(const std::string& brokerUrl) {
        if (postroom::parse_broker_url(brokerUrl).scheme != postroom::BrokerScheme::redis)
            return admin(brokerUrl).list_topics();
        auto& slot = streamAdmins[brokerUrl];
        if (!slot) slot = std::make_unique<postroom::redis::StreamAdmin>(brokerUrl);
        std::vector<postroom::TopicInfo> out;
        for (auto& name : slot->streams()) out.push_back({std::move(name), 1, 1});
        return out;
    }

    void forget(const std::string& brokerUrl) {
        admins.erase(brokerUrl);
        streamAdmins.erase(brokerUrl);
    }
};

namespace {

QString describe(const postroom::Error& error) {
    const QString what = QString::fromStdString(error.what());
    switch (error.kind()) {
        case postroom::ErrorKind::configuration:
            return BrokerBackend::tr("%1 — correct the broker URL and press Connect.").arg(what);
        case postroom::ErrorKind::transport:
            return BrokerBackend::tr(
                       "%1 — check that the broker is running and reachable, then "
                       "press Connect to retry.")
                .arg(what);
        case postroom::ErrorKind::fatal_client:
            return BrokerBackend::tr(
                       "%1 — the client was discarded; press Connect to start a new "
                       "one.")
                .arg(what);
        default: return what;
    }
}

}  // namespace

BrokerBackend::BrokerBackend(QObject* parent)
    : QObject(parent), m_clients(std::make_unique<Clients>()) {
    m_thread.setObjectName(QStringLiteral("postroom-broker-backend"));
    m_worker.moveToThread(&m_thread);
    m_thread.start();
}

BrokerBackend::~BrokerBackend() {
    // Work still queued is dropped; the clients are released once the thread is gone.
    m_thread.quit();
    m_thread.wait();
}

quint64 BrokerBackend::requestTopics(const QString& brokerUrl) {
    const quint64 requestId = ++m_lastRequestId;
    QMetaObject::invokeMethod(
        &m_worker,
        [this, requestId, url = brokerUrl.toStdString()] {
            try {
                QVector<TopicRow> rows;
                for (const auto& topic : m_clients->topics(url))
                    rows.append({QString::fromStdString(topic.name), topic.partitions,
                                 topic.replication_factor});
                QMetaObject::invokeMethod(
                    this,
                    [this, requestId, rows = std::move(rows)] {
                        emit topicsLoaded(requestId, rows);
                    },
                    Qt::QueuedConnection);
            } catch (const postroom::Error& error) {
                m_clients->forget(url);  // a failed client is recreated on the next request
                reportFailure(requestId, describe(error));
            } catch (const std::exception& error) {
                m_clients->forget(url);
                reportFailure(requestId, tr("Unexpected error: %1").arg(error.what()));
            }
        },
        Qt::QueuedConnection);
    return requestId;
}

void BrokerBackend::reportFailure(quint64 requestId, const QString& message) {
    QMetaObject::invokeMethod(
        this, [this, requestId, message] { emit requestFailed(requestId, message); },
        Qt::QueuedConnection);
}
