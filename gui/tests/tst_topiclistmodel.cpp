#include <QAbstractItemModelTester>
#include <QtTest>

#include "models/topiclistmodel.h"

class TestTopicListModel : public QObject {
    Q_OBJECT
private slots:
    void passesModelTester() {
        TopicListModel model;
        QAbstractItemModelTester tester(&model,
                                        QAbstractItemModelTester::FailureReportingMode::QtTest);
        model.setTopics({{"orders", 6, 3}, {"payments", 3, 1}});
        QCOMPARE(model.rowCount(), 2);
        model.setTopics({});
        QCOMPARE(model.rowCount(), 0);
        model.setTopics({{"audit", 1, 1}});
        QCOMPARE(model.rowCount(), 1);
    }

    void headers() {
        TopicListModel model;
        QCOMPARE(model.columnCount(), 3);
        QCOMPARE(model.headerData(TopicListModel::NameColumn, Qt::Horizontal).toString(),
                 QStringLiteral("Name"));
        QCOMPARE(model.headerData(TopicListModel::PartitionsColumn, Qt::Horizontal).toString(),
                 QStringLiteral("Partitions"));
        QCOMPARE(model.headerData(TopicListModel::ReplicationColumn, Qt::Horizontal).toString(),
                 QStringLiteral("Replication"));
    }

    void data() {
        TopicListModel model;
        model.setTopics({{"orders", 6, 3}, {"payments", 3, 1}});
        QCOMPARE(model.data(model.index(0, TopicListModel::NameColumn)).toString(),
                 QStringLiteral("orders"));
        QCOMPARE(model.data(model.index(0, TopicListModel::PartitionsColumn)).toInt(), 6);
        QCOMPARE(model.data(model.index(0, TopicListModel::ReplicationColumn)).toInt(), 3);
        QCOMPARE(model.data(model.index(1, TopicListModel::NameColumn)).toString(),
                 QStringLiteral("payments"));
        QCOMPARE(model.data(model.index(1, TopicListModel::PartitionsColumn)).toInt(), 3);
        QCOMPARE(model.data(model.index(1, TopicListModel::ReplicationColumn)).toInt(), 1);
        // Numbers are right-aligned, names are not.
        const auto alignment =
            model.data(model.index(0, TopicListModel::PartitionsColumn), Qt::TextAlignmentRole)
                .value<Qt::Alignment>();
        QVERIFY(alignment & Qt::AlignRight);
        QVERIFY(!model.data(model.index(0, TopicListModel::NameColumn), Qt::TextAlignmentRole)
                     .isValid());
        QVERIFY(!model.index(2, 0).isValid());
        QCOMPARE(model.topics().size(), 2);
    }
};

QTEST_GUILESS_MAIN(TestTopicListModel)
#include "tst_topiclistmodel.moc"
