#include <QLineEdit>
#include <QSet>
#include <QSignalSpy>
#include <QStatusBar>
#include <QTableView>
#include <QTemporaryDir>
#include <QtTest>

#include "app/mainwindow.h"
#include "app/topicscontroller.h"
#include "backend/brokerbackend.h"
#include "models/topiclistmodel.h"
#include "postroom/embedded/broker.hpp"

namespace {
QStringList topicNames(const TopicListModel& model) {
    QStringList names;
    for (const auto& topic : model.topics()) names << topic.name;
    return names;
}
}  // namespace

class TestInspector : public QObject {
    Q_OBJECT
private slots:
    void onlyLatestRequestIsApplied() {
        postroom::embedded::Broker::shared("gui-stale-old")->create_topic("old-topic", 1);
        auto newer = postroom::embedded::Broker::shared("gui-stale-new");
        newer->create_topic("new-a", 2);
        newer->create_topic("new-b", 4);

        BrokerBackend backend;
        TopicListModel model;
        TopicsController controller(backend, model);
        QSignalSpy answered(&backend, &BrokerBackend::topicsLoaded);
        QSignalSpy applied(&controller, &TopicsController::topicsApplied);

        controller.refresh(QStringLiteral("embedded://gui-stale-old"));
        const quint64 stale = controller.pendingRequestId();
        controller.refresh(QStringLiteral("embedded://gui-stale-new"));
        QVERIFY(controller.pendingRequestId() > stale);
        QCOMPARE(controller.status(), QStringLiteral("loading…"));

        // Both requests are answered; only the second answer reaches the model.
        QTRY_COMPARE_WITH_TIMEOUT(answered.count(), 2, 30'000);
        QCOMPARE(applied.count(), 1);
        QCOMPARE(topicNames(model), (QStringList{"new-a", "new-b"}));
        QCOMPARE(controller.status(), QStringLiteral("2 topics on embedded://gui-stale-new"));
        QCOMPARE(controller.pendingRequestId(), quint64(0));

        // An answer to the superseded request arriving late changes nothing either.
        controller.applyTopics(stale, {{"late", 1, 1}});
        controller.applyFailure(stale, QStringLiteral("late failure"));
        QCOMPARE(topicNames(model), (QStringList{"new-a", "new-b"}));
        QCOMPARE(controller.status(), QStringLiteral("2 topics on embedded://gui-stale-new"));
        QCOMPARE(applied.count(), 1);
    }

    void windowShowsErrorInStatusBar() {
        BrokerBackend backend;
        TopicListModel model;
        TopicsController controller(backend, model);
        MainWindow window(controller, model);
        QSignalSpy failed(&controller, &TopicsController::loadFailed);

        window.setBrokerUrl(QStringLiteral("nope://x"));
        window.connectToBroker();
        QCOMPARE(window.statusBar()->currentMessage(), QStringLiteral("loading…"));
        QVERIFY(failed.wait(30'000));
        const QString message = window.statusBar()->currentMessage();
        QVERIFY2(message.contains(QStringLiteral("embedded://[name]")), qPrintable(message));
    }

    // Issue 23, item 4: a password in the broker URL is shown nowhere — not in the URL
    // field, the status line, its tooltip or an error — yet connecting still uses it.
    void passwordInTheUrlIsShownNowhere() {
        const QString secret = QStringLiteral("s3cr3t-P4ss");
        BrokerBackend backend;
        TopicListModel model;
        TopicsController controller(backend, model);
        MainWindow window(controller, model);
        QSignalSpy failed(&controller, &TopicsController::loadFailed);

        // Typed into the field, then Connect: the field masks it, the URL used keeps it.
        const QString url = QStringLiteral("kafka://alice:s3cr3t-P4ss@127.0.0.1:1");
        window.findChild<QLineEdit*>()->setText(url);
        window.connectToBroker();
        QCOMPARE(window.shownBrokerUrl(), QStringLiteral("kafka://alice:***@127.0.0.1:1"));
        QCOMPARE(window.brokerUrl(), url);
        QVERIFY(failed.wait(30'000));
        const QString error = window.statusBar()->currentMessage();
        QVERIFY2(error.contains(QStringLiteral("kafka://alice:***@127.0.0.1:1")),
                 qPrintable(error));
        for (const QString& shown : {error, window.statusBar()->toolTip(), window.shownBrokerUrl(),
                                     failed.first().first().toString()})
            QVERIFY2(!shown.contains(secret), qPrintable(shown));

        // A new URL typed over the masked one is used as typed.
        window.findChild<QLineEdit*>()->setText(QStringLiteral("embedded://gui-other"));
        QCOMPARE(window.brokerUrl(), QStringLiteral("embedded://gui-other"));

        // The status line of a successful load names the broker redacted.
        controller.refresh(QStringLiteral("redis://bob:s3cr3t-P4ss@127.0.0.1:1/0"));
        controller.applyTopics(controller.pendingRequestId(), {{"orders", 1, 1}});
        QCOMPARE(controller.status(), QStringLiteral("1 topic on redis://bob:***@127.0.0.1:1/0"));
    }

    void windowRendersToPng() {
        postroom::embedded::Broker::shared("gui-window")->create_topic("orders", 6);

        BrokerBackend backend;
        TopicListModel model;
        TopicsController controller(backend, model);
        MainWindow window(controller, model);
        QSignalSpy applied(&controller, &TopicsController::topicsApplied);
        window.setBrokerUrl(QStringLiteral("embedded://gui-window"));
        window.resize(640, 360);
        window.show();
        window.connectToBroker();
        QVERIFY(applied.wait(30'000));
        QCOMPARE(window.topicView()->model()->rowCount(), 1);
        QCOMPARE(window.statusBar()->currentMessage(),
                 QStringLiteral("1 topic on embedded://gui-window"));

        const QImage image = window.grab().toImage();
        QVERIFY(!image.isNull());
        QCOMPARE(image.size(), window.size() * window.devicePixelRatio());
        QSet<QRgb> colours;  // something was drawn: not a blank canvas
        for (int y = 0; y < image.height(); y += 4)
            for (int x = 0; x < image.width(); x += 4) colours.insert(image.pixel(x, y));
        QVERIFY2(colours.size() > 3, qPrintable(QString::number(colours.size())));

        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const QString file = dir.filePath(QStringLiteral("inspector.png"));
        QVERIFY(image.save(file, "PNG"));
        const QImage reloaded(file);
        QCOMPARE(reloaded.size(), image.size());
    }
};

QTEST_MAIN(TestInspector)
#include "tst_inspector.moc"
