#include "app/mainwindow.h"

#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QStatusBar>
#include <QTableView>
#include <QVBoxLayout>

#include "app/topicscontroller.h"
#include "models/topiclistmodel.h"
#include "postroom/redact.hpp"

namespace {
QString redacted(const QString& url) {
    return QString::fromStdString(postroom::redacted_url(url.toStdString()));
}
}  // namespace

MainWindow::MainWindow(TopicsController& controller, TopicListModel& model, QWidget* parent)
    : QMainWindow(parent),
      m_controller(controller),
      m_brokerEdit(new QLineEdit(QStringLiteral("embedded://"))),
      m_connectButton(new QPushButton(tr("Connect"))),
      m_topicView(new QTableView) {
    setWindowTitle(tr("postroom Inspector"));

    m_brokerEdit->setPlaceholderText(tr("kafka://host:port or embedded://[name]"));
    m_topicView->setModel(&model);
    m_topicView->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_topicView->verticalHeader()->hide();
    m_topicView->horizontalHeader()->setSectionResizeMode(TopicListModel::NameColumn,
                                                          QHeaderView::Stretch);

    auto* brokerRow = new QHBoxLayout;
    brokerRow->addWidget(new QLabel(tr("Broker:")));
    brokerRow->addWidget(m_brokerEdit, 1);
    brokerRow->addWidget(m_connectButton);

    auto* central = new QWidget;
    auto* layout = new QVBoxLayout(central);
    layout->addLayout(brokerRow);
    layout->addWidget(m_topicView, 1);
    setCentralWidget(central);

    connect(m_connectButton, &QPushButton::clicked, this, &MainWindow::connectToBroker);
    connect(m_brokerEdit, &QLineEdit::returnPressed, this, &MainWindow::connectToBroker);
    connect(&m_controller, &TopicsController::statusChanged, statusBar(),
            [bar = statusBar()](const QString& status) {
                bar->showMessage(status);
                bar->setToolTip(status);  // long errors are cut off in the bar itself
            });
}

QString MainWindow::brokerUrl() const {
    const QString shown = shownBrokerUrl();
    return shown == redacted(m_brokerUrl) ? m_brokerUrl : shown;
}

QString MainWindow::shownBrokerUrl() const {
    return m_brokerEdit->text().trimmed();
}

void MainWindow::setBrokerUrl(const QString& brokerUrl) {
    m_brokerUrl = brokerUrl.trimmed();
    m_brokerEdit->setText(redacted(m_brokerUrl));
}

void MainWindow::connectToBroker() {
    const QString url = brokerUrl();
    setBrokerUrl(url);  // a password just typed is masked from now on
    m_controller.refresh(url);
}
