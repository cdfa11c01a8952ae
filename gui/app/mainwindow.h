#pragma once
// The Inspector window: broker URL, Connect, the topic table and a status line. It only
// displays; TopicsController does the requesting. The URL field never shows a password: it
// shows the URL redacted (user:***@host) and connects with the URL as given, until the user
// types another one.

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

    // The URL to connect to: the one last given, password included, while the field still
    // shows its redacted form; else what the field says.
    QString brokerUrl() const;
    void setBrokerUrl(const QString& brokerUrl);
    QString shownBrokerUrl() const;  // what the field shows
    QTableView* topicView() const { return m_topicView; }

public slots:
    void connectToBroker();

private:
    TopicsController& m_controller;
    QString m_brokerUrl;  // as given, password included; never displayed
    QLineEdit* m_brokerEdit;
    QPushButton* m_connectButton;
    QTableView* m_topicView;
};
