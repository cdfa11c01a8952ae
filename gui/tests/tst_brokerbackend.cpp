#include <QSignalSpy>
#include <QThread>
#include <QtTest>

#include "backend/brokerbackend.h"
#include "postroom/embedded/broker.hpp"
#include "postroom/redis/streams.hpp"

class TestBrokerBackend : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        auto broker = postroom::embedded::Broker::shared("gui-test");
        broker->create_topic("orders", 3);
        broker->create_topic("payments", 1);
    }

    void listsTopicsOfEmbeddedBroker() {
        BrokerBackend backend;
        QSignalSpy loaded(&backend, &BrokerBackend::topicsLoaded);
        QSignalSpy failed(&backend, &BrokerBackend::requestFailed);
        QThread* emittingThread = nullptr;
        connect(&backend, &BrokerBackend::topicsLoaded, this,
                [&emittingThread] { emittingThread = QThread::currentThread(); });

        const quint64 requestId = backend.requestTopics(QStringLiteral("embedded://gui-test"));
        QCOMPARE(loaded.count(), 0);  // answered later, never from inside the request
        QVERIFY(loaded.wait(30'000));
        QCOMPARE(failed.count(), 0);
        QCOMPARE(emittingThread, QThread::currentThread());

        QCOMPARE(loaded.at(0).at(0).value<quint64>(), requestId);
        const auto topics = loaded.at(0).at(1).value<QVector<TopicRow>>();
        QCOMPARE(topics.size(), 2);
        QCOMPARE(topics.at(0).name, QStringLiteral("orders"));
        QCOMPARE(topics.at(0).partitions, 3);
        QCOMPARE(topics.at(0).replicationFactor, 1);
        QCOMPARE(topics.at(1).name, QStringLiteral("payments"));
        QCOMPARE(topics.at(1).partitions, 1);
    }

    void listsStreamsOfRedis() {
        const QByteArray url = qgetenv("POSTROOM_REDIS_URL");
        if (url.isEmpty())
            QFAIL(
                "POSTROOM_REDIS_URL is not set; start Redis with scripts/services.sh start redis");
        const std::string stream =
            "gui-test-stream-" + std::to_string(QCoreApplication::applicationPid());
        postroom::redis::StreamAdmin redis(url.toStdString());
        redis.create_stream(stream);
        BrokerBackend backend;
        QSignalSpy loaded(&backend, &BrokerBackend::topicsLoaded);
        backend.requestTopics(QString::fromUtf8(url));
        QVERIFY(loaded.wait(30'000));
        redis.remove_stream(stream);
        const auto topics = loaded.at(0).at(1).value<QVector<TopicRow>>();
        bool found = false;
        for (const auto& t : topics)
            if (t.name == QString::fromStdString(stream)) found = t.partitions == 1;
        QVERIFY2(found, "the stream is listed with one partition");
    }

    void badUrlExplainsAcceptedForms() {
        BrokerBackend backend;
        QSignalSpy loaded(&backend, &BrokerBackend::topicsLoaded);
        QSignalSpy failed(&backend, &BrokerBackend::requestFailed);

        const quint64 requestId = backend.requestTopics(QStringLiteral("nope://x"));
        QVERIFY(failed.wait(30'000));
        QCOMPARE(loaded.count(), 0);
        QCOMPARE(failed.at(0).at(0).value<quint64>(), requestId);
        const QString message = failed.at(0).at(1).toString();
        QVERIFY2(message.contains(QStringLiteral("nope://x")), qPrintable(message));
        QVERIFY2(message.contains(QStringLiteral("kafka://host:port")), qPrintable(message));
        QVERIFY2(message.contains(QStringLiteral("embedded://")), qPrintable(message));
        QVERIFY2(message.contains(QStringLiteral("Connect")), qPrintable(message));
    }

    void requestIdsIncrease() {
        BrokerBackend backend;
        QSignalSpy loaded(&backend, &BrokerBackend::topicsLoaded);
        const quint64 first = backend.requestTopics(QStringLiteral("embedded://gui-test"));
        const quint64 second = backend.requestTopics(QStringLiteral("embedded://gui-test"));
        QVERIFY(first != 0);
        QVERIFY(second > first);
        QTRY_COMPARE_WITH_TIMEOUT(loaded.count(), 2, 30'000);
        QCOMPARE(loaded.at(0).at(0).value<quint64>(), first);
        QCOMPARE(loaded.at(1).at(0).value<quint64>(), second);
    }
};

QTEST_GUILESS_MAIN(TestBrokerBackend)
#include "tst_brokerbackend.moc"
