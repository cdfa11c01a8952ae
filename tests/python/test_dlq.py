"""Dead-letter tooling against real Kafka and Redis: letters written by a foreign client
(confluent-kafka-python) in every known header convention are decoded, grouped and replayed
to their original topic; a replay killed with SIGKILL resumes without loss; rate limit, dry
run, loop guard, purge, export/import round trip, lag, and the CLI."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer as ForeignConsumer
from confluent_kafka import Producer as ForeignProducer

import postroom
from postroom.errors import UsageError
from postroom.stores import SQLiteStore

from .conftest import require_env, unique

FOREIGN_STYLES: dict[str, list[tuple[str, bytes]]] = {
    "spring": [
        ("kafka_dlt-exception-fqcn",
         b"org.springframework.kafka.listener.ListenerExecutionFailedException"),
        ("kafka_dlt-exception-cause-fqcn", b"java.lang.IllegalStateException"),
        ("kafka_dlt-exception-message", b"payment 4711 declined"),
        ("kafka_dlt-exception-stacktrace",
         b"java.lang.IllegalStateException: x\n\tat com.acme.Pay.charge(Pay.java:42)"),
        ("kafka_dlt-original-partition", struct.pack(">i", 0)),
        ("kafka_dlt-original-offset", struct.pack(">q", 17)),
        ("kafka_dlt-original-consumer-group", b"payments"),
    ],
    "spring-retry-topic": [
        ("kafka_exception-fqcn", b"java.io.IOException"),
        ("kafka_exception-message", b"timeout after 3000 ms"),
        ("kafka_original-partition", struct.pack(">i", 0)),
        ("kafka_original-offset", struct.pack(">q", 3)),
    ],
    "kafka-connect": [
        ("__connect.errors.exception.class.name",
         b"org.apache.kafka.connect.errors.DataException"),
        ("__connect.errors.exception.message", b"Unknown magic byte!"),
        ("__connect.errors.partition", b"0"),
        ("__connect.errors.offset", b"99"),
        ("__connect.errors.connector.name", b"jdbc-sink"),
    ],
    "kafka-streams": [
        ("__streams.errors.exception", b"java.lang.NullPointerException"),
        ("__streams.errors.message", b"null"),
        ("__streams.errors.partition", b"0"),
        ("__streams.errors.offset", b"5"),
    ],
    "watermill": [("reason_poisoned", b"cannot decode order 12"),
                  ("handler_poisoned", b"orders-handler")],
    "masstransit": [("MT-Fault-ExceptionType", b"System.InvalidOperationException"),
                    ("MT-Fault-Message", b"Sequence contains no elements"),
                    ("MT-Fault-RetryCount", b"2")],
    "nservicebus": [("NServiceBus.ExceptionInfo.ExceptionType", b"System.Exception"),
                    ("NServiceBus.ExceptionInfo.Message", b"boom"),
                    ("NServiceBus.ProcessingEndpoint", b"Sales")],
}
# Where each style names the original topic (filled in per test).
TOPIC_HEADER = {"spring": "kafka_dlt-original-topic",
                "spring-retry-topic": "kafka_original-topic",
                "kafka-connect": "__connect.errors.topic",
                "kafka-streams": "__streams.errors.topic",
                "watermill": "topic_poisoned", "masstransit": "MT-Source-Address",
                "nservicebus": "NServiceBus.FailedQ"}


@pytest.fixture
def kafka() -> postroom.Broker:
    return postroom.connect(require_env("POSTROOM_KAFKA_URL"))


@pytest.fixture
def topics(kafka: postroom.Broker) -> Iterator[tuple[str, str]]:
    source, dlq = unique("orders"), ""
    dlq = source + ".dlq"
    for t in (source, dlq):
        kafka.create_topic(t, 1)
    yield source, dlq
    for t in (source, dlq, dlq + ".ledger", dlq + ".parking"):
        if kafka.topic(t) is not None:
            kafka.delete_topic(t)


def write_foreign(kafka: postroom.Broker, dlq: str, source: str, per_style: int = 3) -> None:
    producer = ForeignProducer({"bootstrap.servers": kafka.bootstrap_servers})
    for style, headers in FOREIGN_STYLES.items():
        for i in range(per_style):
            producer.produce(dlq, key=f"{style}-{i}".encode(),
                             value=b"\x00payload\xff" + bytes([i]),
                             headers=[*headers, (TOPIC_HEADER[style], source.encode()),
                                      ("trace-id", f"t-{style}-{i}".encode())])
    producer.flush(30)


def read_foreign(kafka: postroom.Broker, topic: str, n: int) -> list[object]:
    consumer = ForeignConsumer({"bootstrap.servers": kafka.bootstrap_servers,
                                "group.id": unique("foreign"), "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: list[object] = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m)
    consumer.close()
    return got


@pytest.mark.kafka
def test_foreign_letters_are_decoded_grouped_and_replayed_to_their_origin(
        kafka: postroom.Broker, topics: tuple[str, str]) -> None:
    source, dlq = topics
    write_foreign(kafka, dlq, source)
    letters = kafka.dead_letters(dlq)
    listed = letters.list(limit=100)
    assert len(listed) == 3 * len(FOREIGN_STYLES)
    assert {d.convention for d in listed} == set(FOREIGN_STYLES)
    assert all(d.original_topic == source for d in listed), "the original topic is found"
    spring = next(d for d in listed if d.convention == "spring")
    assert spring.error_type == "java.lang.IllegalStateException"
    assert (spring.original_partition, spring.original_offset) == (0, "17"), "binary decoded"
    groups = letters.stats()
    assert len(groups) == len(FOREIGN_STYLES)
    assert all(g.count == 3 and g.original_topics == {source} for g in groups)

    report = letters.replay(error_type="IllegalState")
    assert (report.replayed, report.per_target) == (3, {source: 3})
    back = read_foreign(kafka, source, 3)
    assert len(back) == 3
    for m in back:
        headers = dict(m.headers())  # type: ignore[attr-defined]
        assert m.key().startswith(b"spring-")  # type: ignore[attr-defined]
        assert m.value().startswith(b"\x00payload\xff")  # type: ignore[attr-defined]
        assert headers["trace-id"].startswith(b"t-spring-"), "headers kept"
        assert headers["postroom-replay-count"] == b"1"
    assert len(letters.list(limit=100)) == 3 * len(FOREIGN_STYLES) - 3, "replayed ones leave"


@pytest.mark.kafka
def test_a_replay_strips_every_conventions_failure_headers_unless_asked_to_keep_them(
        kafka: postroom.Broker, topics: tuple[str, str]) -> None:
    source, dlq = topics
    write_foreign(kafka, dlq, source, per_style=1)
    with kafka.producer() as producer:  # and one of postroom's own
        producer.send(b"own", topic=dlq, key="postroom-0",
                      headers=[("postroom-dlt-reason", b"non-retryable"),
                               ("postroom-dlt-error-type", b"ValueError"),
                               ("postroom-dlt-original-topic", source.encode()),
                               ("trace-id", b"t-postroom-0")])
    letters = kafka.dead_letters(dlq)
    ids = {d.record.key: d.id for d in letters.list(limit=100)}
    report = letters.replay()
    assert report.replayed == len(FOREIGN_STYLES) + 1
    assert report.replay_id and report.truncated == 0
    back = read_foreign(kafka, source, report.replayed)
    assert len(back) == report.replayed
    failure_names = {name for headers in FOREIGN_STYLES.values() for name, _ in headers}
    failure_names |= set(TOPIC_HEADER.values()) - {"MT-Source-Address"}
    failure_names |= {"postroom-dlt-reason", "postroom-dlt-error-type",
                      "postroom-dlt-original-topic"}
    for m in back:
        headers = dict(m.headers())  # type: ignore[attr-defined]
        style = m.key().decode().rsplit("-", 1)[0]  # type: ignore[attr-defined]
        left = failure_names & set(headers)
        assert not left, f"{style}: the replayed record still claims to have failed: {left}"
        assert headers["trace-id"].startswith(b"t-"), "other headers are kept"
        assert headers["postroom-replayed-from"] == ids[m.key()].encode()  # type: ignore
        assert headers["postroom-replay-id"] == report.replay_id.encode()
        assert headers["postroom-replay-count"] == b"1"

    kept = letters.replay(again=True, keep_failure_headers=True, ids=[ids[b"spring-0"]])
    assert kept.replayed == 1 and kept.replay_id != report.replay_id
    [again] = read_foreign(kafka, source, report.replayed + 1)[-1:]
    headers = dict(again.headers())  # type: ignore[attr-defined]
    assert {name for name, _ in FOREIGN_STYLES["spring"]} <= set(headers), "kept when asked"
    assert headers["postroom-replay-id"] == kept.replay_id.encode()


@pytest.mark.kafka
def test_a_replayed_event_that_fails_again_is_traced_to_its_first_letter(
        kafka: postroom.Broker, topics: tuple[str, str]) -> None:
    source, dlq = topics

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        raise postroom.errors.NonRetryableError("still broken")

    with kafka.producer() as producer:
        producer.send(postroom.Event(type="order", source="/t", id="ev-1"), topic=source, key="k")
    name = unique("p")
    with postroom.Processor(kafka, name=name, topics=source, handler=handler) as processor:
        processor.run(idle_timeout=3.0, handle_signals=False)
    letters = kafka.dead_letters(dlq)
    [first] = letters.list(limit=10)
    assert (first.replayed_from, first.replay_id) == ("", "")
    report = letters.replay()
    assert report.replayed == 1
    with postroom.Processor(kafka, name=name, topics=source, handler=handler) as processor:
        processor.run(idle_timeout=3.0, handle_signals=False)
    [second] = letters.list(limit=10)
    assert second.id != first.id
    assert (second.replayed_from, second.replay_id) == (first.id, report.replay_id)
    assert second.replay_count == 1 and second.error_message == "still broken"
    headers = [name for name, _ in second.record.headers]
    assert headers.count("postroom-dlt-reason") == 1, "one failure description, the latest"


@pytest.mark.kafka
def test_dry_run_rate_limit_loop_guard_and_purge(kafka: postroom.Broker,
                                                 topics: tuple[str, str]) -> None:
    source, dlq = topics
    with kafka.producer() as producer:
        producer.send_batch([(f"k{i}", b"v", [("postroom-dlt-error-type", b"ValueError"),
                                             ("postroom-dlt-original-topic", source.encode()),
                                             ("postroom-replay-count", b"3" if i < 2 else b"0")])
                             for i in range(62)], topic=dlq)
    letters = kafka.dead_letters(dlq)
    plan = letters.replay(dry_run=True)
    assert plan.selected == 62 and plan.replayed == 0
    assert kafka.watermarks(source, 0) == (0, 0), "a dry run sends nothing"

    report = letters.replay(rate=20.0)
    assert (report.replayed, report.parked) == (60, 2)
    assert kafka.watermarks(source, 0)[1] == 60
    # The rate, from the replayed records' own timestamps: the two parked letters went
    # first (slots 0 and 1), the 60 others in slots 2..61 of 1/20 s each.
    with kafka.consumer(unique("rate"), source) as consumer:
        stamps = sorted(m.timestamp_ms for m in consumer.messages(idle_timeout=2.0))
    observed = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000)
    assert 20 * 0.9 <= observed <= 20 * 1.1, observed
    assert kafka.watermarks(dlq + ".parking", 0)[1] == 2, "the loop guard parked them"

    with kafka.producer() as producer:
        producer.send(b"late", topic=dlq, headers=[("postroom-dlt-error-type", b"KeyError")])
    [late] = letters.list(limit=10)
    assert letters.purge([late.id], note="fixed by hand") == 1
    assert letters.list(limit=10) == []
    assert letters.ledger()[late.id][0] == "resolved"
    with pytest.raises(UsageError, match="confirm"):
        letters.truncate(0, 10)
    assert letters.truncate(0, 10, confirm=True) == 10


@pytest.mark.kafka
@pytest.mark.robustness
def test_a_replay_killed_midway_resumes_without_loss_or_duplicate_effects(
        kafka: postroom.Broker, topics: tuple[str, str], tmp_path: Path) -> None:
    source, dlq = topics
    n = 400
    with kafka.producer() as producer:
        producer.send_batch([(f"k{i % 7}", postroom.Event(type="order", source="/t", id=f"ev-{i}"),
                              [("postroom-dlt-error-type", b"ValueError"),
                               ("postroom-dlt-original-topic", source.encode())])
                             for i in range(n)], topic=dlq)
    command = [sys.executable, "-m", "postroom", "dlq", "replay", dlq, "--broker", kafka.url,
               "--rate", "200"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    done_before = len(kafka.dead_letters(dlq).ledger())
    assert 0 < done_before < n, "killed in the middle"
    resumed = subprocess.run([*command[:-2], "--json"], capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["skipped"] == done_before and report["replayed"] == n - done_before

    applied: Counter[str] = Counter()
    with postroom.Processor(kafka, name=unique("downstream"), topics=source,
                            store=SQLiteStore(str(tmp_path / "marks.db")),
                            handler=lambda e, ctx: applied.update([e.id])) as processor:
        counters = processor.run(idle_timeout=3.0)
    assert set(applied) == {f"ev-{i}" for i in range(n)}, "lost = 0"
    assert max(applied.values()) == 1, "duplicate effects = 0"
    # Sent twice: at most what was in flight (rate 200/s: batches of 20, up to 5 of them
    # unacknowledged or with their ledger entries unwritten) when the replay was killed.
    assert counters.duplicates <= 5 * 20, counters.duplicates


@pytest.mark.kafka
def test_export_then_import_round_trips_byte_for_byte(kafka: postroom.Broker,
                                                      topics: tuple[str, str],
                                                      tmp_path: Path) -> None:
    source, dlq = topics
    write_foreign(kafka, dlq, source, per_style=1)
    with kafka.producer() as producer:
        producer.send(bytes(range(256)), topic=dlq, key=b"\xff\x00",
                      headers=[("bin", bytes(range(256))), ("null", None)])
    first = tmp_path / "first.jsonl"
    second = tmp_path / "second.jsonl"
    letters = kafka.dead_letters(dlq)
    assert letters.export(first) == len(FOREIGN_STYLES) + 1
    copy = dlq + ".copy"
    kafka.create_topic(copy, 1)
    try:
        assert kafka.dead_letters(copy).import_(first) == len(FOREIGN_STYLES) + 1
        kafka.dead_letters(copy).export(second)
        strip = [{k: v for k, v in json.loads(line).items() if k in ("key", "value", "headers")}
                 for line in first.read_text().splitlines()]
        again = [{k: v for k, v in json.loads(line).items() if k in ("key", "value", "headers")}
                 for line in second.read_text().splitlines()]
        assert strip == again
    finally:
        kafka.delete_topic(copy)


@pytest.mark.kafka
def test_cli_list_show_stats_replay_and_lag(kafka: postroom.Broker,
                                            topics: tuple[str, str]) -> None:
    source, dlq = topics
    write_foreign(kafka, dlq, source, per_style=2)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "postroom", *args, "--broker", kafka.url],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "COLUMNS": "250"})  # tables unwrapped

    listed = json.loads(cli("dlq", "list", dlq, "--json", "--limit", "5").stdout)
    assert len(listed) == 5
    shown = json.loads(cli("dlq", "show", dlq, listed[0]["id"], "--json").stdout)
    assert shown["id"] == listed[0]["id"] and "headers" in shown
    stats = json.loads(cli("dlq", "stats", dlq, "--json").stdout)
    assert sorted(g["count"] for g in stats) == [2] * len(FOREIGN_STYLES)
    human = cli("dlq", "stats", dlq)
    assert human.returncode == 0 and "Unknown magic byte!" in human.stdout
    plan = json.loads(cli("dlq", "replay", dlq, "--dry-run", "--group",
                          stats[0]["fingerprint"], "--json").stdout)
    assert plan["selected"] == 2 and plan["replayed"] == 0
    missing = cli("dlq", "list", "no-such-topic.dlq")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    bad = cli("dlq", "list", dlq, "--since", "yesterday-ish")
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr

    group = unique("lag")
    with kafka.consumer(group, source) as consumer:
        with kafka.producer() as producer:
            producer.send_batch([b"a", b"b", b"c"], topic=source)
        got = consumer.poll_batch(3, timeout=10.0)
        consumer.mark_done(got[0])
        consumer.commit()
    rows = json.loads(cli("lag", group, source, "--json").stdout)
    assert rows == [{"topic": source, "partition": 0, "committed": 1, "end": 3, "lag": 2,
                     "pending": None}]


@pytest.mark.redis
def test_redis_dead_letters_list_replay_and_purge_deletes_entries() -> None:
    redis = postroom.connect(require_env("POSTROOM_REDIS_URL"))
    source = unique("rstream")
    dlq = source + ".dlq"
    try:
        with redis.producer() as producer:
            producer.send_batch([(f"k{i}", postroom.Event(type="t", source="/s", id=f"r-{i}"),
                                  [("postroom-dlt-error-type", b"ValueError"),
                                   ("postroom-dlt-original-topic", source.encode())])
                                 for i in range(5)], topic=dlq)
        letters = redis.dead_letters(dlq)
        listed = letters.list()
        assert len(listed) == 5 and listed[0].id.startswith(dlq + ":")
        assert letters.stats()[0].count == 5
        assert letters.replay(ids=[listed[0].id]).replayed == 1
        [back] = redis.range(source)  # type: ignore[attr-defined]
        assert back.header("postroom-replay-count") == b"1"
        assert letters.purge([d.id for d in listed[1:3]]) == 2
        assert len(letters) == 3, "on Redis a purge deletes the entries"
        assert len(letters.list()) == 2, "the replayed one is settled"
        rows = redis.lag("nobody", [source])
        assert rows == []
    finally:
        for s in (source, dlq, dlq + ".ledger"):
            redis.delete_topic(s)


@pytest.mark.redis
def test_cli_on_redis_stats_replay_purge_export_and_import(tmp_path: Path) -> None:
    url = require_env("POSTROOM_REDIS_URL")
    redis = postroom.connect(url)
    source = unique("rcli")
    dlq = source + ".dlq"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "postroom", *args, "--broker", url],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "COLUMNS": "250"})

    try:
        with redis.producer() as producer:
            producer.send_batch([(f"k{i}", bytes([i, 0, 255]),
                                  [("MT-Fault-ExceptionType", b"System.TimeoutException"),
                                   ("MT-Fault-Message", f"timed out after {i} s".encode()),
                                   ("MT-Source-Address", source.encode())])
                                 for i in range(6)], topic=dlq)
        stats = json.loads(cli("dlq", "stats", dlq, "--json").stdout)
        assert [(g["count"], g["error_type"]) for g in stats] == [(6, "System.TimeoutException")]
        listed = json.loads(cli("dlq", "list", dlq, "--json").stdout)
        assert len(listed) == 6 and all(d["original_topic"] == source for d in listed)
        plan = json.loads(cli("dlq", "replay", dlq, "--group", stats[0]["fingerprint"],
                              "--dry-run", "--json").stdout)
        assert plan["selected"] == 6 and redis.length(source) == 0  # type: ignore[attr-defined]
        done = json.loads(cli("dlq", "replay", dlq, "--id", listed[0]["id"], "--json").stdout)
        assert done["replayed"] == 1 and redis.length(source) == 1  # type: ignore[attr-defined]
        export = tmp_path / "letters.jsonl"
        assert cli("dlq", "export", dlq, "--out", str(export)).returncode == 0
        assert len(export.read_text().splitlines()) == 6
        assert cli("dlq", "purge", dlq, listed[1]["id"], listed[2]["id"], "--yes").returncode == 0
        assert redis.length(dlq) == 4  # type: ignore[attr-defined]
        assert cli("dlq", "import", dlq, str(export), "--to", dlq + ".copy").returncode == 0
        copies = redis.range(dlq + ".copy")  # type: ignore[attr-defined]
        assert sorted(m.value for m in copies) == sorted(bytes([i, 0, 255]) for i in range(6))
    finally:
        for s in (source, dlq, dlq + ".ledger", dlq + ".copy"):
            redis.delete_topic(s)
