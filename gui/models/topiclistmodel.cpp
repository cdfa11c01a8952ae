#include "models/topiclistmodel.h"

TopicListModel::TopicListModel(QObject* parent) : QAbstractTableModel(parent) {}

void TopicListModel::setTopics(QVector<TopicRow> topics) {
    beginResetModel();
    m_topics = std::move(topics);
    endResetModel();
}

int TopicListModel::rowCount(const QModelIndex& parent) const {
    return parent.isValid() ? 0 : static_cast<int>(m_topics.size());
}

int TopicListModel::columnCount(const QModelIndex& parent) const {
    return parent.isValid() ? 0 : ColumnCount;
}

QVariant TopicListModel::data(const QModelIndex& index, int role) const {
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
        return {};
    const TopicRow& row = m_topics.at(index.row());
    if (role == Qt::DisplayRole) {
        switch (index.column()) {
            case NameColumn: return row.name;
            case PartitionsColumn: return row.partitions;
            case ReplicationColumn: return row.replicationFactor;
            default: return {};
        }
    }
    if (role == Qt::TextAlignmentRole && index.column() != NameColumn)
        return QVariant::fromValue(Qt::AlignRight | Qt::AlignVCenter);
    return {};
}

QVariant TopicListModel::headerData(int section, Qt::Orientation orientation, int role) const {
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole)
        return QAbstractTableModel::headerData(section, orientation, role);
    switch (section) {
        case NameColumn: return tr("Name");
        case PartitionsColumn: return tr("Partitions");
        case ReplicationColumn: return tr("Replication");
        default: return {};
    }
}
