#!/usr/bin/env python3
"""Dead-letter tooling benchmark: grouping N dead letters by error fingerprint and replaying
them, postroom versus a plain Python script with confluent-kafka-python doing the same work
(read every letter, fingerprint its error headers, count per group; re-produce letters to
their original topic and wait for the acknowledgements), same broker, one run.

    eval "$(scripts/services.sh env)"
    .venv/bin/python bench/dlq.py [--letters 1000000] [--replay 100000]

Writes bench/results/dlq.json. Never fails on speed; exits non-zero only if a case is wrong
(a count that does not add up).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from rich.console import Console
from service_env import env

import postroom

console = Console()
ERRORS = [("java.lang.IllegalStateException", "payment {n} declined for order {n}"),
          ("ValueError", "cannot parse amount '{n}'"),
          ("org.apache.kafka.connect.errors.DataException", "Unknown magic byte at {n}!"),
          ("KeyError", "customer {n} not found")]
NUMBER = re.compile(r"\d+(?:\.\d+)?")
QUOTED = re.compile(r"'[^']*'")


def write_letters(broker: postroom.Broker, topic: str, source: str, n: int) -> None:
    with broker.producer(linger=0.02) as producer:
        for start in range(0, n, 20_000):
            batch = []
            for i in range(start, min(n, start + 20_000)):
                etype, message = ERRORS[i % len(ERRORS)]
                batch.append((f"k{i % 1000}", b"x" * 100, [
                    ("postroom-dlt-error-type", etype.encode()),
                    ("postroom-dlt-error-message", message.format(n=i).encode()),
                    ("postroom-dlt-original-topic", source.encode()),
                    ("postroom-dlt-original-offset", str(i).encode())]))
            producer.send_batch(batch, topic=topic)
            console.print(f"  wrote {min(n, start + 20_000):,} / {n:,}", end="\r")
    console.print()


def python_stats(bootstrap: str, topic: str, partitions: int, ends: list[int]) -> int:
    """What a careful script does: read to the end, fingerprint, count."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-" + uuid.uuid4().hex[:6],
                  "enable.auto.commit": False, "fetch.max.bytes": 104857600})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    left = {p: ends[p] for p in range(partitions) if ends[p] > 0}
    groups: Counter[str] = Counter()
    read = 0
    while left:
        for m in c.consume(10_000, 0.5):
            if m.error():
                continue
            headers = dict(m.headers() or [])
            etype = headers.get("postroom-dlt-error-type", b"").decode()
            text = QUOTED.sub("'<s>'", headers.get("postroom-dlt-error-message", b"").decode())
            text = NUMBER.sub("<n>", text)
            groups[hashlib.blake2b(f"{etype}\x1f{text}".encode(), digest_size=8).hexdigest()] += 1
            read += 1
            if m.offset() + 1 >= left.get(m.partition(), 0):
                left.pop(m.partition(), None)
    c.close()
    return sum(groups.values()) if len(groups) == len(ERRORS) else -1


def python_replay(bootstrap: str, topic: str, target: str, n: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-" + uuid.uuid4().hex[:6],
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0)])
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    sent = 0
    acked = [0]

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is None:
            acked[0] += 1

    while sent < n:
        for m in c.consume(min(10_000, n - sent), 0.5):
            if m.error():
                continue
            headers = [(k, v) for k, v in (m.headers() or []) if not k.startswith("postroom-dlt-")]
            headers.append(("postroom-replay-count", b"1"))
            p.produce(target, key=m.key(), value=m.value(), headers=headers,
                      on_delivery=on_delivery)
            p.poll(0)
            sent += 1
    p.flush(60)
    c.close()
    return acked[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--letters", type=int, default=1_000_000)
    parser.add_argument("--replay", type=int, default=100_000)
    parser.add_argument("--json", default="bench/results/dlq.json")
    args = parser.parse_args()
    broker = postroom.connect(env("POSTROOM_KAFKA_URL"))
    tag = uuid.uuid4().hex[:8]
    big, small, source = f"bench-dlq-{tag}", f"bench-dlq-r-{tag}", f"bench-src-{tag}"
    broker.create_topic(big, 3)
    broker.create_topic(small, 1)
    broker.create_topic(source, 1)
    results: list[dict[str, Any]] = []
    try:
        console.print(f"writing {args.letters:,} dead letters to {big}")
        write_letters(broker, big, source, args.letters)
        ends = [broker.watermarks(big, p)[1] for p in range(3)]

        t0 = time.perf_counter()
        groups = broker.dead_letters(big).stats()
        postroom_s = time.perf_counter() - t0
        if sum(g.count for g in groups) != args.letters or len(groups) != len(ERRORS):
            raise SystemExit(f"postroom stats: {len(groups)} groups, "
                             f"{sum(g.count for g in groups)} letters")
        t0 = time.perf_counter()
        counted = python_stats(broker.bootstrap_servers, big, 3, ends)
        python_s = time.perf_counter() - t0
        if counted != args.letters:
            raise SystemExit(f"python stats counted {counted}")
        results += [{"case": "stats.postroom", "letters": args.letters,
                     "seconds": round(postroom_s, 2)},
                    {"case": "stats.python", "letters": args.letters,
                     "seconds": round(python_s, 2)}]
        console.print(f"stats over {args.letters:,}: postroom {postroom_s:.2f} s, "
                      f"python {python_s:.2f} s")

        console.print(f"writing {args.replay:,} dead letters to {small}")
        write_letters(broker, small, source, args.replay)
        t0 = time.perf_counter()
        acked = python_replay(broker.bootstrap_servers, small, source, args.replay)
        python_r = time.perf_counter() - t0
        if acked != args.replay:
            raise SystemExit(f"python replay: {acked} acknowledged")
        t0 = time.perf_counter()
        report = broker.dead_letters(small).replay(batch_size=5000)
        postroom_r = time.perf_counter() - t0
        if report.replayed != args.replay:
            raise SystemExit(f"postroom replay: {report.replayed} replayed")
        results += [{"case": "replay.postroom", "letters": args.replay,
                     "seconds": round(postroom_r, 2),
                     "letters_per_s": round(args.replay / postroom_r)},
                    {"case": "replay.python", "letters": args.replay,
                     "seconds": round(python_r, 2),
                     "letters_per_s": round(args.replay / python_r)}]
        console.print(f"replay of {args.replay:,}: postroom {args.replay / postroom_r:,.0f}/s "
                      "(recorded in the ledger), python "
                      f"{args.replay / python_r:,.0f}/s (no record of progress)")
    finally:
        for t in (big, small, source, small + ".ledger"):
            if broker.topic(t) is not None:
                broker.delete_topic(t)

    ratios = [
        {"name": f"stats over {args.letters:,} letters: seconds (target < 10)",
         "value": round(postroom_s, 2), "target": 10.0, "met": postroom_s < 10.0},
        {"name": "stats: postroom speed / python script",
         "value": round(python_s / postroom_s, 2), "target": 3.0,
         "met": python_s / postroom_s >= 3.0},
        {"name": "replay: postroom speed / python script",
         "value": round(python_r / postroom_r, 2), "target": 3.0,
         "met": python_r / postroom_r >= 3.0},
    ]
    for r in ratios:
        console.print(f"{r['name']}: {r['value']} ({'met' if r['met'] else 'not met'})")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "dlq", "results": results, "ratios": ratios,
                               "machine": {"cpus": os.cpu_count(),
                                           "python": platform.python_version()}}, indent=2))
    console.print(f"results: {out}")


if __name__ == "__main__":
    main()
