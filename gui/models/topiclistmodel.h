#pragma once
// Table of topics (Name, Partitions, Replication), replaced wholesale by setTopics().
//
// Thread-safety: GUI thread only, like every item model.

#include <QAbstractTableModel>
#include <QVector>

#include "models/topicrow.h"

class TopicListModel final : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { NameColumn, PartitionsColumn, ReplicationColumn, ColumnCount };

    explicit TopicListModel(QObject* parent = nullptr);

    void setTopics(QVector<TopicRow> topics);
    const QVector<TopicRow>& topics() const { return m_topics; }

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation,
                        int role = Qt::DisplayRole) const override;

private:
    QVector<TopicRow> m_topics;
};
