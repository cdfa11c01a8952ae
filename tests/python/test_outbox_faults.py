"""Outbox relay faults against the real broker: the relay killed between the broker's
acknowledgement and marking the batch sent (a deterministic crash point, like kill -9), then
restarted. Counted: lost = 0; duplicates only within the batch in flight; duplicate effects
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

from .conftest import unique

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
    assert duplicated == 10, "exactly the batch in flight was published twice"

    applied: list[str] = []
    with postroom.Processor(broker, name=unique("downstream"), topics=topic,
                            handler=lambda e, c: applied.append(e.id)) as processor:
        while processor.counters.finished < len(got):
            processor.run_once(0.5)
        assert processor.counters.duplicates == 10
    assert sorted(applied) == sorted(ids), "duplicate effects = 0"
    broker.delete_topic(topic)
