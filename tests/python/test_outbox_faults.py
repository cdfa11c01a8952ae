"""Outbox relay faults against the real broker: the relay killed between the broker's
acknowledgement and marking the batch sent (a deterministic crash point, like kill -9), then
restarted. Counted: lost = 0; duplicates only within the batches in flight (two); duplicate effects
downstream = 0 with an idempotent consumer."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import postroom

from .conftest import service, unique

pytestmark = [pytest.mark.kafka, pytest.mark.robustness]


def relay(db: str, broker_url: str, topic: str, crash_point: str | None = None,
          ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "POSTROOM_CRASH_POINT"}
    if crash_point:
        env["POSTROOM_CRASH_POINT"] = crash_point
    return subprocess.run(
        [sys.executable, "-c", "from postroom.cli import main; main()", "outbox", "relay",
         "--db", db, "--broker", broker_url, "--topic", topic, "--batch-size", "10",
         "--idle-exit", "1.5", "--json"],
        capture_output=True, text=True, env=env, timeout=120)


def test_relay_killed_between_ack_and_mark_republishes_without_loss(kafka_url: str,
                                                                    tmp_path: Path) -> None:
    broker = postroom.connect(kafka_url)
    topic = unique("outbox-fault")
    broker.create_topic(topic, 2)
    path = tmp_path / "shop.db"
    db = f"sqlite:///{path}"
    with postroom.Outbox(db, broker) as outbox, sqlite3.connect(path) as conn:
        ids = [outbox.add(conn, postroom.Event(type="order.placed", source="/shop",
                                               data={"n": n}),
                          aggregate_type="order", aggregate_id=f"customer-{n % 5}")
               for n in range(50)]

    crashed = relay(db, kafka_url, topic, crash_point="outbox-after-ack:3")
    assert crashed.returncode == 137, crashed.stderr
    assert "crash point 'outbox-after-ack' reached" in crashed.stderr
    with postroom.Outbox(db, broker) as outbox:
        assert outbox.status().pending == 30, "two batches were marked, the third was not"
    finished = relay(db, kafka_url, topic)
    assert finished.returncode == 0, finished.stderr

    with broker.consumer(unique("reader"), topic) as consumer:
        got = [m.event().id for m in consumer.messages(idle_timeout=3.0, limit=100)]
    copies = Counter(got)
    assert set(copies) == set(ids), "lost = 0"
    duplicated = sum(n - 1 for n in copies.values())
    # The relay pipelines two batches: the third (acknowledged, not marked) is published
    # again, and so is the fourth, which was on its way when the process died.
    assert 10 <= duplicated <= 20, "only the batches in flight were published twice"

    applied: list[str] = []
    with postroom.Processor(broker, name=unique("downstream"), topics=topic,
                            handler=lambda e, c: applied.append(e.id)) as processor:
        while processor.counters.finished < len(got):
            processor.run_once(0.5)
        assert processor.counters.duplicates == duplicated
    assert sorted(applied) == sorted(ids), "duplicate effects = 0"
    broker.delete_topic(topic)


def test_broker_down_then_back_drains_the_backlog_without_spinning(kafka_url: str,
                                                                   tmp_path: Path) -> None:
    import resource
    import threading
    import time

    broker = postroom.connect(kafka_url)
    topic = unique("outbox-down")
    broker.create_topic(topic, 1)
    path = tmp_path / "shop.db"
    outbox = postroom.Outbox(f"sqlite:///{path}", broker, topic=topic, publish_timeout=60.0)
    service("kill", "kafka")
    try:
        with sqlite3.connect(path) as conn:
            ids = [outbox.add(conn, postroom.Event(type="t", source="/s", data={"n": n}),
                              aggregate_type="order", aggregate_id=f"k{n % 3}")
                   for n in range(40)]
        runner = threading.Thread(target=outbox.run, kwargs={"handle_signals": False})
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        runner.start()
        time.sleep(6)
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime -
                                                             cpu_before.ru_stime)
        assert cpu < 2.0, f"{cpu:.2f} CPU seconds in 6 s of outage: a hot loop"
        assert outbox.status().pending == 40, "nothing is marked while the broker is down"
    finally:
        service("start", "kafka")
    deadline = time.monotonic() + 90
    while outbox.status().pending and time.monotonic() < deadline:
        time.sleep(0.2)
    outbox.stop()
    runner.join()
    outbox.close()
    assert outbox.status().pending == 0, "the backlog drained"
    with broker.consumer(unique("reader"), topic) as consumer:
        got = {m.event().id for m in consumer.messages(idle_timeout=3.0, limit=200)}
    assert got == set(ids), "lost = 0"
    broker.delete_topic(topic)


@pytest.mark.postgres
def test_postgres_restarted_mid_relay_loses_nothing(kafka_url: str) -> None:
    import threading
    import time

    import psycopg

    from .conftest import require_env

    pg_url = require_env("POSTROOM_PG_URL")
    broker = postroom.connect(kafka_url)
    topic = unique("outbox-pg")
    broker.create_topic(topic, 1)
    table = unique("outbox").replace("-", "_")
    outbox = postroom.Outbox(pg_url, broker, table=table, topic=topic, batch_size=5,
                             poll_interval=0.05, blocked_backoff_max=1.0)
    ids: list[str] = []
    with psycopg.connect(pg_url) as conn:
        for n in range(60):
            ids.append(outbox.add(conn, postroom.Event(type="t", source="/s", data={"n": n}),
                                  aggregate_type="order", aggregate_id="k"))
    runner = threading.Thread(target=outbox.run, kwargs={"handle_signals": False})
    runner.start()
    time.sleep(0.3)
    service("restart", "postgres")
    deadline = time.monotonic() + 60
    pending = -1
    while time.monotonic() < deadline:
        try:
            pending = outbox.status().pending
        except postroom.errors.PostroomError:
            pending = -1  # still reconnecting
        if pending == 0:
            break
        time.sleep(0.2)
    outbox.stop()
    runner.join()
    outbox.close()
    assert pending == 0
    with broker.consumer(unique("reader"), topic) as consumer:
        got = [m.event().id for m in consumer.messages(idle_timeout=3.0, limit=200)]
    assert set(got) == set(ids), "lost = 0"
    assert len(got) - len(set(got)) <= 5, "duplicates only within the batch in flight"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{table}"')
    broker.delete_topic(topic)


WRITER = """
import os, sqlite3, sys
import postroom
path, log = sys.argv[1], sys.argv[2]
outbox = postroom.Outbox("sqlite:///" + path)
conn = sqlite3.connect(path)
conn.execute("CREATE TABLE IF NOT EXISTS orders (n INTEGER)")
conn.commit()
with open(log, "a") as committed:
    for n in range(100000):
        conn.execute("INSERT INTO orders VALUES (?)", (n,))
        event_id = outbox.add(conn, postroom.Event(type="t", source="/s", data={"n": n}),
                              aggregate_type="order", aggregate_id=f"k{n % 3}")
        conn.commit()
        committed.write(event_id + "\\n")
        committed.flush()
        os.fsync(committed.fileno())
"""


def test_sqlite_writer_killed_during_commits_loses_nothing(kafka_url: str,
                                                          tmp_path: Path) -> None:
    import time

    path, log = tmp_path / "shop.db", tmp_path / "committed.txt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(log)],
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while (not log.exists() or len(log.read_text().split()) < 200) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    writer.kill()  # SIGKILL, most likely inside a transaction or its commit
    writer.wait(timeout=10)
    committed = log.read_text().split()
    assert len(committed) >= 200, writer.stderr.read() if writer.stderr else ""
    check = sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()
    assert check == ("ok",)

    broker = postroom.connect(kafka_url)
    topic = unique("outbox-writer")
    broker.create_topic(topic, 1)
    with postroom.Outbox(f"sqlite:///{path}", broker, topic=topic) as outbox:
        in_table = outbox.status().pending
        while outbox.relay_once():
            pass
        assert outbox.status().pending == 0
    with broker.consumer(unique("reader"), topic) as consumer:
        got = {m.event().id for m in consumer.messages(idle_timeout=3.0, limit=in_table + 10)}
    assert set(committed) <= got, "lost = 0: every commit the writer saw is published"
    assert len(got) == in_table, "and nothing else than the committed rows"
    broker.delete_topic(topic)
