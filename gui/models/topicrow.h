#pragma once
// The immutable snapshot values that the backend produces and the models display. They live
// here, in the lowest GUI layer, so models depend on neither the backend nor postroom::core.

#include <QList>
#include <QMetaType>
#include <QString>

struct TopicRow {
    QString name;
    int partitions = 0;
    int replicationFactor = 0;
    friend bool operator==(const TopicRow&, const TopicRow&) = default;
};

Q_DECLARE_METATYPE(TopicRow)
