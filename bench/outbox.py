#!/usr/bin/env python3
"""Outbox relay benchmark: postroom's relay (C++, LISTEN/NOTIFY) side by side with a plain
Python relay (psycopg + confluent-kafka-python, polling with FOR UPDATE SKIP LOCKED), on the
same PostgreSQL database and Kafka broker, in one run.

- Throughput: N committed rows (100-byte payloads) drained to the broker, rows/s from the
  relay's first read until every row is recorded sent. Each round starts both relays on two
  fresh tables (their producers connected), fills the tables, runs ANALYZE on both, and
  drains them in alternating order; the median and the median of the per-round ratios
  ("paired") are reported.
- Latency at a fixed offered rate: a writer commits one event per transaction at R events/s;
  a consumer records when each arrives. Commit-to-consume p50/p99 (an upper bound of
  commit-to-ack).

    eval "$(scripts/services.sh env)"
    .venv/bin/python bench/outbox.py [--rows 200000] [--repeat 3] [--rate 200] [--seconds 10]

Writes bench/results/outbox.json. Never fails on speed: exit 0 unless a case loses rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from rich.console import Console
from rich.table import Table
from service_env import env

import postroom

console = Console()
POLL_INTERVAL = 0.1  # the plain relay's poll period when idle (seconds)


class PythonRelay:
    """What teams hand-write: claim pending rows with FOR UPDATE SKIP LOCKED, produce them,
    flush, mark them sent, commit; poll again."""

    def __init__(self, pg_url: str, bootstrap: str, table: str, topic: str,
                 batch_size: int) -> None:
        self.batch_size = batch_size
        self.conn = psycopg.connect(pg_url)
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                  "linger.ms": 5})
        self.table, self.topic = table, topic
        self.stop = threading.Event()

    @staticmethod
    def create_index(pg_url: str, table: str) -> None:
        """The plain relay's own index: pending rows in seq order, partial so that a row
        marked sent leaves it (postroom's relay on PostgreSQL needs none)."""
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE INDEX "{table}_pending" ON "{table}" (seq) '
                         "WHERE status = 'pending'")

    def relay_once(self) -> int:
        with self.conn.transaction():
            rows = self.conn.execute(
                f'SELECT seq, id, aggregateid, type, payload FROM "{self.table}" '
                "WHERE status = 'pending' ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED",
                (self.batch_size,)).fetchall()
            if not rows:
                return 0
            failures: list[Any] = []
            for _, event_id, key, event_type, payload in rows:
                self.producer.produce(
                    self.topic, value=payload, key=key,
                    headers=[("ce_id", event_id), ("ce_type", event_type),
                             ("ce_source", "/bench"), ("ce_specversion", "1.0")],
                    on_delivery=lambda err, msg: failures.append(err) if err else None)
            self.producer.flush()
            if failures:
                raise RuntimeError(f"{len(failures)} deliveries failed: {failures[0]}")
            self.conn.execute(f'UPDATE "{self.table}" SET status = \'sent\' '
                              "WHERE seq = ANY(%s)", ([r[0] for r in rows],))
        return len(rows)

    def run(self) -> None:
        while not self.stop.is_set():
            if self.relay_once() == 0:
                time.sleep(POLL_INTERVAL)


def fill(outbox: postroom.Outbox, pg_url: str, rows: int) -> None:
    with psycopg.connect(pg_url) as conn:
        for n in range(rows):
            outbox.add(conn, postroom.Event(type="bench", source="/bench", data=b"x" * 100),
                       aggregate_type="order", aggregate_id=f"k{n % 64}")
            if n % 100 == 99:
                conn.commit()


def throughput(name: str, rows: int, drain: Callable[[], None],
               pending: Callable[[], int]) -> dict[str, Any]:
    started = time.perf_counter()
    drain()
    seconds = time.perf_counter() - started
    left = pending()
    if left:
        raise SystemExit(f"{name}: {left} rows still pending")
    result = {"case": name, "rows": rows, "seconds": round(seconds, 3),
              "rows_per_s": round(rows / seconds)}
    console.print(f"  {name}: {result['rows_per_s']:,} rows/s")
    return result


def latency(name: str, outbox: postroom.Outbox, pg_url: str, bootstrap: str, topic: str,
            rate: int, seconds: float, start: Callable[[], None],
            stop: Callable[[], None]) -> dict[str, Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-" + uuid.uuid4().hex,
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    partitions = consumer.list_topics(topic).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, consumer.get_watermark_offsets(
        TopicPartition(topic, p))[1]) for p in partitions])
    committed_at: dict[str, float] = {}
    arrived_at: dict[str, float] = {}
    start()

    def write() -> None:
        with psycopg.connect(pg_url) as conn:
            next_at = time.perf_counter()
            end = next_at + seconds
            while next_at < end:
                event_id = outbox.add(conn, postroom.Event(type="bench", source="/bench",
                                                           data=b"x" * 100),
                                      aggregate_type="order", aggregate_id="k")
                conn.commit()
                committed_at[event_id] = time.perf_counter()
                next_at += 1.0 / rate
                time.sleep(max(0.0, next_at - time.perf_counter()))

    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.perf_counter() + seconds + 15
    while time.perf_counter() < deadline and (writer.is_alive()
                                              or len(arrived_at) < len(committed_at)):
        msg = consumer.poll(0.05)
        if msg is None or msg.error():
            continue
        event_id = dict(msg.headers() or [])["ce_id"].decode()
        arrived_at.setdefault(event_id, time.perf_counter())
    writer.join()
    stop()
    consumer.close()
    waits = sorted((arrived_at[i] - t) * 1000 for i, t in committed_at.items()
                   if i in arrived_at)
    if len(waits) < len(committed_at):
        raise SystemExit(f"{name}: {len(committed_at) - len(waits)} events never arrived")
    result = {"case": name, "rate": rate, "events": len(waits),
              "p50_ms": round(statistics.median(waits), 1),
              "p99_ms": round(waits[int(len(waits) * 0.99) - 1], 1)}
    console.print(f"  {name}: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000,
                        help="rows per drain (a drain of 50,000 takes a third of a second)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="throughput rounds, each on fresh tables")
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=500,
                        help="rows per batch, for both relays")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", default="bench/results/outbox.json")
    args = parser.parse_args()
    kafka_url, pg_url = env("POSTROOM_KAFKA_URL"), env("POSTROOM_PG_URL")
    broker = postroom.connect(kafka_url)
    bootstrap = broker.bootstrap_servers
    tag = uuid.uuid4().hex[:8]
    tables = {case: f"bench_outbox_{case}_{tag}" for case in ("prl", "pyl")}
    topics = {case: f"bench-outbox-{case}-{tag}" for case in tables}
    boxes: dict[str, postroom.Outbox] = {}

    def outbox_for(case: str) -> postroom.Outbox:
        broker.create_topic(topics[case], 3)
        boxes[case] = postroom.Outbox(pg_url, broker, table=tables[case], topic=topics[case],
                                      batch_size=args.batch_size)
        if case.startswith("py"):
            PythonRelay.create_index(pg_url, tables[case])
        return boxes[case]

    python_case, postroom_case = "python relay (psycopg + confluent-kafka)", "postroom relay"
    console.print(f"throughput: {args.rows:,} committed rows, drained; {args.repeat} rounds, "
                  "the order alternating")
    runs: dict[str, list[dict[str, Any]]] = {python_case: [], postroom_case: []}
    for round_no in range(args.repeat):
        for case in (f"pr{round_no}", f"py{round_no}"):
            tables[case] = f"bench_outbox_{case}_{tag}"
            topics[case] = f"bench-outbox-{case}-{tag}"
            outbox_for(case)
        # Both relays are up, their producers connected, before the rows are written.
        pr_box = boxes[f"pr{round_no}"]
        assert pr_box.relay_once() == 0
        py_relay = PythonRelay(pg_url, bootstrap, tables[f"py{round_no}"],
                               topics[f"py{round_no}"], args.batch_size)
        for case in (f"pr{round_no}", f"py{round_no}"):
            fill(boxes[case], pg_url, args.rows)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            # Fresh statistics for both tables, as a long-running system has them.
            conn.execute(f'ANALYZE "{tables[f"pr{round_no}"]}", "{tables[f"py{round_no}"]}"')

        def drain_postroom(box: postroom.Outbox = pr_box) -> None:
            while box.relay_once():
                pass

        def drain_python(relay: PythonRelay = py_relay) -> None:
            while relay.relay_once():
                pass

        cases = {python_case: (drain_python, boxes[f"py{round_no}"]),
                 postroom_case: (drain_postroom, pr_box)}
        order = [python_case, postroom_case][:: 1 if round_no % 2 == 0 else -1]
        for name in order:
            drain, box = cases[name]
            runs[name].append(throughput(name, args.rows, drain,
                                         lambda b=box: b.status().pending))
        py_relay.conn.close()
    results = []
    for name in (python_case, postroom_case):
        rates = [r["rows_per_s"] for r in runs[name]]
        results.append({"case": name, "rows": args.rows, "runs": rates,
                        "rows_per_s": round(statistics.median(rates))})
    paired = statistics.median(pr["rows_per_s"] / py["rows_per_s"]
                               for py, pr in zip(runs[python_case], runs[postroom_case]))

    console.print(f"latency: {args.rate} events/s for {args.seconds:g} s, one per transaction")
    outbox_for("pyl")
    outbox_for("prl")
    py_latency_relay = PythonRelay(pg_url, bootstrap, tables["pyl"], topics["pyl"],
                                   args.batch_size)
    py_thread = threading.Thread(target=py_latency_relay.run)
    pr_box = boxes["prl"]
    pr_thread = threading.Thread(target=pr_box.run, kwargs={"handle_signals": False})
    latencies = [
        latency(f"python relay (polls every {POLL_INTERVAL * 1000:g} ms)", boxes["pyl"], pg_url,
                bootstrap, topics["pyl"], args.rate, args.seconds, py_thread.start,
                lambda: (py_latency_relay.stop.set(), py_thread.join())),
        latency("postroom relay (LISTEN/NOTIFY)", pr_box, pg_url, bootstrap, topics["prl"],
                args.rate, args.seconds, pr_thread.start,
                lambda: (pr_box.stop(), pr_thread.join())),
    ]
    for box in boxes.values():
        box.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for t in tables.values():
            conn.execute(f'DROP TABLE IF EXISTS "{t}"')
    for t in topics.values():
        broker.delete_topic(t)

    ratio = round(results[1]["rows_per_s"] / results[0]["rows_per_s"], 2)
    ratios = [
        {"name": "postroom relay / python relay throughput", "value": ratio,
         "paired": round(paired, 2), "target": 3.0, "met": ratio >= 3.0},
        {"name": "postroom p50 commit-to-consume (ms, lower is better)",
         "value": latencies[1]["p50_ms"], "target": 20.0,
         "met": latencies[1]["p50_ms"] < 20.0},
    ]
    table = Table(title="outbox relay, PostgreSQL to Kafka")
    for column in ("case", "rows/s", "p50 ms", "p99 ms"):
        table.add_column(column)
    for thr, lat in zip(results, latencies):
        table.add_row(thr["case"], f"{thr['rows_per_s']:,}", str(lat["p50_ms"]),
                      str(lat["p99_ms"]))
    console.print(table)
    for r in ratios:
        console.print(f"{r['name']}: {r['value']} (target {r['target']}, "
                      f"{'met' if r['met'] else 'not met'})")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "outbox", "throughput": results,
                               "latency": latencies, "ratios": ratios,
                               "machine": {"cpus": os.cpu_count(),
                                           "python": platform.python_version()}}, indent=2))
    console.print(f"results: {out}")


if __name__ == "__main__":
    main()
