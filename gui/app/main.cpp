// postroom-inspector: composes backend, model, controller and window.
//
//   postroom-inspector [--broker URL] [--demo-topics] [--screenshot FILE]

#include <QApplication>
#include <QCommandLineParser>
#include <QTimer>

#include <cstdio>

#include "app/mainwindow.h"
#include "app/topicscontroller.h"
#include "backend/brokerbackend.h"
#include "models/topiclistmodel.h"
#include "postroom/broker_url.hpp"
#include "postroom/embedded/broker.hpp"
#include "postroom/error.hpp"
#include "postroom/redact.hpp"

namespace {

// Two example topics on the embedded broker named by brokerUrl, for screenshots and demos.
// The embedded broker lives in this process, so this does no network I/O.
bool createDemoTopics(const QString& brokerUrl) {
    try {
        const auto url = postroom::parse_broker_url(brokerUrl.toStdString());
        if (url.scheme != postroom::BrokerScheme::embedded) {
            std::fprintf(stderr, "--demo-topics needs an embedded:// broker URL, not %s\n",
                         postroom::redacted_url(brokerUrl.toStdString()).c_str());
            return false;
        }
        auto broker = postroom::embedded::Broker::shared(url.embedded_name);
        broker->create_topic("orders", 6);
        broker->create_topic("payments", 3);
        return true;
    } catch (const postroom::Error& error) {
        std::fprintf(stderr, "--demo-topics: %s\n", error.what());
        return false;
    }
}

}  // namespace

int main(int argc, char* argv[]) {
    QApplication app(argc, argv);
    QApplication::setApplicationName(QStringLiteral("postroom-inspector"));
    QApplication::setApplicationDisplayName(QStringLiteral("postroom Inspector"));

    QCommandLineParser parser;
    parser.setApplicationDescription(QStringLiteral("Browse the topics of a postroom broker."));
    parser.addHelpOption();
    const QCommandLineOption brokerOption(
        QStringLiteral("broker"),
        QStringLiteral("Broker URL: kafka://host:port or embedded://[name]."),
        QStringLiteral("URL"), QStringLiteral("embedded://"));
    const QCommandLineOption screenshotOption(
        QStringLiteral("screenshot"),
        QStringLiteral("Load the topics, save the window as a PNG to FILE and exit "
                       "(exit code 1 if loading failed)."),
        QStringLiteral("FILE"));
    const QCommandLineOption demoOption(
        QStringLiteral("demo-topics"),
        QStringLiteral("Create two example topics on the embedded broker first."));
    parser.addOptions({brokerOption, screenshotOption, demoOption});
    parser.process(app);

    const QString brokerUrl = parser.value(brokerOption);
    if (parser.isSet(demoOption) && !createDemoTopics(brokerUrl)) return 2;

    BrokerBackend backend;
    TopicListModel model;
    TopicsController controller(backend, model);
    MainWindow window(controller, model);
    window.setBrokerUrl(brokerUrl);
    window.resize(720, 400);

    if (parser.isSet(screenshotOption)) {
        const QString file = parser.value(screenshotOption);
        auto saveAndQuit = [&window, file](int exitCode) {
            // Next event-loop turn: let the view lay out the new rows first.
            QTimer::singleShot(0, &window, [&window, file, exitCode] {
                if (!window.grab().save(file, "PNG")) {
                    std::fprintf(stderr, "cannot write %s\n", qPrintable(file));
                    QApplication::exit(1);
                    return;
                }
                QApplication::exit(exitCode);
            });
        };
        QObject::connect(&controller, &TopicsController::topicsApplied, &window,
                         [saveAndQuit] { saveAndQuit(0); });
        QObject::connect(&controller, &TopicsController::loadFailed, &window,
                         [saveAndQuit](const QString& message) {
                             std::fprintf(stderr, "%s\n", qPrintable(message));
                             saveAndQuit(1);
                         });
    }

    window.show();
    window.connectToBroker();
    return QApplication::exec();
}
