"""Faults against the real broker: the processor process is crashed at each durability
boundary, killed with SIGKILL or stopped with SIGTERM, then restarted. Counted: lost = 0 and
duplicate effects = 0 (the ledger has no uniqueness, so duplicates would show); duplicate
deliveries are allowed and reported."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import postroom

from .conftest import kill_then_start, require_env, service, unique

pytestmark = [pytest.mark.kafka, pytest.mark.robustness]

WORKER = Path(__file__).with_name("fault_worker.py")


class Run:
    def __init__(self, kafka_url: str, tmp_path: Path, events: int, poison: int = 0,
                 postgres_url: str | None = None, keys: int = 5, concurrency: int = 1,
                 redis_url: str | None = None) -> None:
        self.concurrency = concurrency
        self.redis_url = redis_url
        self.url = kafka_url
        self.broker = postroom.connect(kafka_url)
        self.topic = unique("fault")
        self.group = unique("fault-group")
        self.broker.create_topic(self.topic, 2)
        self.broker.create_topic(self.topic + ".dlq", 1)
        self.postgres_url = postgres_url
        self.db = postgres_url or redis_url or str(tmp_path / "ledger.db")
        self.deliveries = tmp_path / "deliveries.txt"
        self.ids = [f"ev-{i:04d}" for i in range(events)]
        items = [(f"key-{i % keys}", postroom.Event(type="order", source="/fault", id=i_))
                 for i, i_ in enumerate(self.ids)]
        items += [("key-0", postroom.Event(type="poison", source="/fault", id=f"poison-{n}"))
                  for n in range(poison)]
        with self.broker.producer() as producer:
            producer.send_batch(items, topic=self.topic)

    def start(self, delay: float = 0.0, crash_point: str | None = None,
              consumer_name: str | None = None) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("POSTROOM_CRASH_POINT", "POSTROOM_FAULT_CONSUMER")}
        if crash_point:
            env["POSTROOM_CRASH_POINT"] = crash_point
        if consumer_name:
            env["POSTROOM_FAULT_CONSUMER"] = consumer_name
        return subprocess.Popen(
            [sys.executable, str(WORKER), self.url, self.topic, self.group, str(self.db),
             str(self.deliveries), str(delay), str(self.concurrency)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def start_working(self, delay: float,
                      consumer_name: str | None = None) -> subprocess.Popen[str]:
        """Starts a worker and waits until it is up."""
        proc = self.start(delay=delay, consumer_name=consumer_name)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        return proc

    def crash_at(self, crash_point: str) -> None:
        """Runs a worker that exits like kill -9 at the crash point."""
        proc = self.start(crash_point=crash_point)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 137, err
        assert f"crash point '{crash_point.split(':')[0]}' reached" in err

    def wait_for_deliveries(self, n: int, limit: float = 60.0) -> None:
        """Waits until the worker handled at least n events (some, not all, of the work)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.deliveries.exists() and len(self.deliveries.read_text().split()) >= n:
                return
            time.sleep(0.05)
        raise AssertionError(f"the worker did not handle {n} events within {limit} s")

    def finish(self, consumer_name: str | None = None) -> dict[str, Any]:
        """Restarts the worker and lets it drain; returns its counters."""
        proc = self.start(consumer_name=consumer_name)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        return dict(json.loads(out.splitlines()[-1]))

    def check(self) -> dict[str, int]:
        if self.redis_url:
            import redis

            entries = redis.Redis.from_url(self.redis_url).lrange(
                f"fault:{self.topic}:ledger", 0, -1)
            rows = [(e.decode(),) for e in entries]
        elif self.postgres_url:
            import psycopg

            with psycopg.connect(self.postgres_url) as conn:
                rows = conn.execute(f"SELECT event_id FROM {self.ledger}").fetchall()
        else:
            rows = sqlite3.connect(self.db).execute("SELECT event_id FROM ledger").fetchall()
        applied = Counter(r[0] for r in rows)
        deliveries = Counter(self.deliveries.read_text().split())
        figures = {
            "lost": len(set(self.ids) - set(applied)),
            "duplicate_effects": sum(n - 1 for n in applied.values() if n > 1),
            "duplicate_deliveries": sum(n - 1 for n in deliveries.values() if n > 1),
        }
        assert figures["lost"] == 0, figures
        assert figures["duplicate_effects"] == 0, figures
        assert set(applied) == set(self.ids), "nothing but the real events was applied"
        return figures

    @property
    def ledger(self) -> str:
        return "ledger_" + self.topic.replace("-", "_")

    def cleanup(self) -> None:
        self.broker.delete_topic(self.topic)
        self.broker.delete_topic(self.topic + ".dlq")
        if self.redis_url:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            client.delete(f"fault:{self.topic}:ledger",
                          *client.keys(f"fault:{self.topic}:marks:*"))
        if self.postgres_url:
            import psycopg

            with psycopg.connect(self.postgres_url) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {self.ledger}")
                conn.execute(f"DROP TABLE IF EXISTS marks_{self.topic.replace('-', '_')}")


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                                   pytest.param("redis", marks=pytest.mark.redis)])
# The handler and store crash points fire once per batch transaction (at most batch_size=10
# events in the worker): ":3" is mid-run for 40 events.
@pytest.mark.parametrize("crash_point", ["after-handler:3", "after-store-commit:3",
                                         "after-offset-commit:1"])
def test_crash_at_each_durability_boundary(kafka_url: str, tmp_path: Path, crash_point: str,
                                           store: str) -> None:
    postgres_url = require_env("POSTROOM_PG_URL") if store == "postgres" else None
    redis_url = require_env("POSTROOM_REDIS_URL") if store == "redis" else None
    run = Run(kafka_url, tmp_path, events=40, postgres_url=postgres_url, redis_url=redis_url)
    run.crash_at(crash_point)
    counters = run.finish()
    run.check()
    if crash_point.startswith("after-store-commit"):
        assert counters["duplicates"] >= 1, "the committed event came back and was skipped"
    run.cleanup()


def test_crash_after_dead_letter_loses_nothing(kafka_url: str, tmp_path: Path) -> None:
    run = Run(kafka_url, tmp_path, events=10, poison=1)
    run.crash_at("after-dead-letter:1")
    run.finish()
    run.check()
    with run.broker.consumer(unique("r"), run.topic + ".dlq") as consumer:
        letters = list(consumer.messages(idle_timeout=5.0))
    assert {m.event().id for m in letters} == {"poison-0"}, "dead-lettered (maybe twice), not lost"
    run.cleanup()


@pytest.mark.parametrize("concurrency", [1, 2])
def test_kill_9_mid_run_then_restart(kafka_url: str, tmp_path: Path, concurrency: int) -> None:
    run = Run(kafka_url, tmp_path, events=150, keys=16, concurrency=concurrency)
    proc = run.start_working(delay=0.02)
    run.wait_for_deliveries(40)
    proc.kill()
    proc.wait(timeout=10)
    done_before = len(run.deliveries.read_text().split())
    assert 40 <= done_before < 150
    run.finish()
    run.check()
    run.cleanup()


def test_sigterm_stops_cleanly_and_nothing_is_lost(kafka_url: str, tmp_path: Path) -> None:
    run = Run(kafka_url, tmp_path, events=100)
    proc = run.start_working(delay=0.02)
    run.wait_for_deliveries(20)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert time.monotonic() - sent < 10, "a clean stop does not wait for the whole backlog"
    run.finish()
    figures = run.check()
    assert figures["duplicate_deliveries"] == 0, "a clean stop commits what it finished"
    run.cleanup()


def test_broker_killed_and_restarted_during_processing(kafka_url: str, tmp_path: Path) -> None:
    run = Run(kafka_url, tmp_path, events=120)
    proc = run.start_working(delay=0.03)
    run.wait_for_deliveries(30)
    kill_then_start("kafka", down_for=3)
    # The worker rides out the outage (or stops when idle); either way a restart drains.
    try:
        proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    run.finish()
    run.check()
    run.cleanup()


@pytest.mark.postgres
def test_postgres_restarted_mid_processing(kafka_url: str, tmp_path: Path) -> None:
    run = Run(kafka_url, tmp_path, events=120, postgres_url=require_env("POSTROOM_PG_URL"))
    proc = run.start_working(delay=0.03)
    run.wait_for_deliveries(30)
    service("restart", "postgres")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "store-blocked" in err or "lost" in err or "PostgreSQL" in err, \
        "the outage was seen and ridden out"
    run.finish()
    run.check()
    run.cleanup()


@pytest.mark.redis
def test_redis_killed_and_restarted_mid_processing(kafka_url: str, tmp_path: Path) -> None:
    """Redis (AOF, appendfsync always) dies under a worker using the Redis store: the worker
    backs off, reconnects and finishes; every acknowledged MULTI/EXEC survived the restart."""
    run = Run(kafka_url, tmp_path, events=120, redis_url=require_env("POSTROOM_REDIS_URL"))
    proc = run.start_working(delay=0.03)
    run.wait_for_deliveries(30)
    kill_then_start("redis", down_for=2)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "store-blocked" in err, "the outage was seen and ridden out"
    run.finish()
    run.check()
    run.cleanup()


@pytest.mark.parametrize("concurrency", [1, 2])
def test_rebalance_to_a_second_worker_mid_run(kafka_url: str, tmp_path: Path,
                                              concurrency: int) -> None:
    """A second process joins the group while the first is working: partitions move, revoked
    ones commit only what was finished (with lanes: after the lane let go of them), and every
    event is applied exactly once."""
    run = Run(kafka_url, tmp_path, events=300, keys=32,  # both partitions get plenty
              concurrency=concurrency)
    partitions_with_data = [p for p in range(2) if run.broker.watermarks(run.topic, p)[1] > 100]
    assert partitions_with_data == [0, 1]
    first = run.start_working(delay=0.02)
    run.wait_for_deliveries(30)
    second = run.start(delay=0.02)
    out_second, err_second = second.communicate(timeout=180)
    out_first, err_first = first.communicate(timeout=180)
    assert first.returncode == 0, err_first
    assert second.returncode == 0, err_second
    first_counts = json.loads(out_first.splitlines()[-1])
    second_counts = json.loads(out_second.splitlines()[-1])
    # The first worker held both partitions, then gave one up while it was still working.
    sizes = [len(a) for a in first_counts["assignments"]]
    assert sizes[0] == 2 and 1 in sizes, first_counts["assignments"]
    assert second_counts["assignments"], "the second worker was given partitions"
    assert first_counts["processed"] + second_counts["processed"] == 300
    run.check()
    run.cleanup()
