#pragma once
// The Inspector window: broker URL, Connect, the topic table and a status line. It only
// displays; TopicsController does the requesting.

#include <QMainWindow>

class QLineEdit;
class QPushButton;
class QTableView;
class TopicListModel;
class TopicsController;

class MainWindow final : public QMainWindow {
    Q_OBJECT
public:
    MainWindow(TopicsController& controller, TopicListModel& model, QWidget* parent = nullptr);

    QString brokerUrl() const;
    void setBrokerUrl(const QString& brokerUrl);
    QTableView* topicView() const { return m_topicView; }

public slots:
    void connectToBroker();

private:
    TopicsController& m_controller;
    QLineEdit* m_brokerEdit;
    QPushButton* m_connectButton;
    QTableView* m_topicView;
};
