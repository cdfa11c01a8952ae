"""The postroom command line, run as a user would (a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import postroom

from .conftest import require_env, unique


def run(*args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postroom", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.unit
def test_demo_on_the_embedded_broker() -> None:
    result = run("demo")
    assert result.returncode == 0, result.stderr
    assert "received 30; lost 0; duplicates 0; per-key order kept" in result.stdout


@pytest.mark.unit
def test_demo_json() -> None:
    result = run("demo", "--events", "12", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["summary"]["sent"] == 12 and doc["summary"]["received"] == 12
    assert doc["summary"]["lost"] == 0 and doc["summary"]["duplicates"] == 0


@pytest.mark.kafka
def test_demo_topics_and_tail_on_the_real_broker(kafka_url: str) -> None:
    topic = unique("cli")
    result = run("demo", "--broker", kafka_url, "--topic", topic, "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(run("topics", "--broker", kafka_url, "--json").stdout)
    assert {"name": topic, "partitions": 3, "replication_factor": 1} in listed
    tail = run("tail", topic, "--broker", kafka_url, "--from-beginning", "--limit", "30",
               "--json")
    assert tail.returncode == 0, tail.stderr
    records = [json.loads(line) for line in tail.stdout.splitlines()]
    assert len(records) == 30 and all("ce_id" in r["headers"] for r in records)
    assert run("topics", "--broker", kafka_url, "delete", topic, "--yes").returncode == 0


@pytest.mark.redis
def test_demo_topics_and_tail_on_redis_streams() -> None:
    url = require_env("POSTROOM_REDIS_URL")
    stream = unique("cli")
    result = run("demo", "--broker", url, "--topic", stream, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert summary["lost"] == 0 and summary["received"] == 30
    listed = json.loads(run("topics", "--broker", url, "--json").stdout)
    assert {"name": stream, "partitions": 1, "replication_factor": 1} in listed
    tail = run("tail", stream, "--broker", url, "--from-beginning", "--limit", "30", "--json")
    assert tail.returncode == 0, tail.stderr
    records = [json.loads(line) for line in tail.stdout.splitlines()]
    assert len(records) == 30 and all("ce_id" in r["headers"] for r in records)
    assert all("-" in r["offset"] for r in records), "entry ids as positions"
    assert run("topics", "--broker", url, "delete", stream, "--yes").returncode == 0


@pytest.mark.unit
def test_errors_are_one_clear_line_and_exit_1() -> None:
    result = run("topics", "--broker", "kafka://127.0.0.1:1")
    assert result.returncode == 1
    assert "cannot reach the broker" in result.stderr
    assert "Traceback" not in result.stderr
    result = run("topics", "--broker", "nonsense")
    assert result.returncode == 1 and "kafka://host:port" in result.stderr
    result = run("tail", "absent", "--broker", "embedded://")
    assert result.returncode == 1 and "does not exist" in result.stderr


@pytest.mark.unit
def test_broker_command_serves_the_embedded_broker_to_another_process() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "postroom", "broker", "--topic", "shared:2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "embedded broker ready: kafka://" in line, line
        url = line.split()[3]
        remote = postroom.connect(url)
        with remote.producer() as producer:
            producer.send(b"hello from another process", topic="shared", key="k")
        with remote.consumer("g", "shared") as consumer:
            got = next(consumer.messages(idle_timeout=20.0))
        assert got.value == b"hello from another process"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0


@pytest.mark.unit
def test_a_processor_on_the_served_broker_dead_letters_without_blocking() -> None:
    """The served broker answers metadata but not DescribeConfigs (it has no controller):
    the forwarder must not wait for the dead-letter topic's limit for ever."""
    proc = subprocess.Popen([sys.executable, "-m", "postroom", "broker", "--topic", "orders:1",
                             "--topic", "orders.dlq:1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[3]
        remote = postroom.connect(url)
        with remote.producer() as producer:
            for event_id in ("poison", "fine"):
                producer.send(postroom.Event(type="t", source="/s", id=event_id),
                              topic="orders", key="k")
        applied: list[str] = []

        def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
            if event.id == "poison":
                raise postroom.errors.NonRetryableError("bad")
            applied.append(event.id)

        started = time.monotonic()
        with postroom.Processor(remote, name="p", topics="orders", handler=handler,
                                blocked_backoff_max=0.5) as processor:
            while processor.counters.finished < 2 and time.monotonic() - started < 60:
                processor.run_once(0.1)
            counters = processor.counters
        assert applied == ["fine"]
        assert (counters.dead_lettered, counters.blocked_waits) == (1, 0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
