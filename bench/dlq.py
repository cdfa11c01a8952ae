#!/usr/bin/env python3
"""Dead-letter tooling benchmark: grouping N dead letters by error fingerprint and replaying
them, postroom versus a plain Python script with confluent-kafka-python doing the same work
(read every letter, fingerprint its error headers, count per group; re-produce letters to
their original topic and wait for the acknowledgements), same broker, one run.

Replay runs in rounds: each round writes two fresh dead-letter topics of the same letters and
replays one with each tool, in alternating order, each after 2 s of quiet (--settle) so
that neither pays for the writes or the replay before it; the medians and the median of the
per-round ratios ("paired") are reported.

    eval "$(scripts/services.sh env)"
    .venv/bin/python bench/dlq.py [--letters 1000000] [--replay 200000] [--repeat 5]

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
import statistics
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
    parser.add_argument("--replay", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5, help="replay rounds")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds of quiet before each replay (the broker finishes the "
                             "round's writes and the last replay)")
    parser.add_argument("--json", default="bench/results/dlq.json")
    args = parser.parse_args()
    broker = postroom.connect(env("POSTROOM_KAFKA_URL"))
    tag = uuid.uuid4().hex[:8]
    big, source = f"bench-dlq-{tag}", f"bench-src-{tag}"
    broker.create_topic(big, 3)
    broker.create_topic(source, 1)
    created = [big, source]
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

        def replay_postroom(topic: str) -> None:
            report = broker.dead_letters(topic).replay(batch_size=5000)
            if report.replayed != args.replay:
                raise SystemExit(f"postroom replay: {report.replayed} replayed")

        def replay_python(topic: str) -> None:
            acked = python_replay(broker.bootstrap_servers, topic, source, args.replay)
            if acked != args.replay:
                raise SystemExit(f"python replay: {acked} acknowledged")

        rates: dict[str, list[float]] = {"postroom": [], "python": []}
        for round_no in range(args.repeat):
            topics = {case: f"bench-dlq-r{round_no}-{case}-{tag}" for case in rates}
            for topic in topics.values():
                broker.create_topic(topic, 1)
                created += [topic, topic + ".ledger"]
                write_letters(broker, topic, source, args.replay)
            order = ["python", "postroom"][:: 1 if round_no % 2 == 0 else -1]
            for case in order:
                time.sleep(args.settle)
                t0 = time.perf_counter()
                (replay_postroom if case == "postroom" else replay_python)(topics[case])
                rates[case].append(args.replay / (time.perf_counter() - t0))
            console.print(f"replay round {round_no + 1} of {args.replay:,}: postroom "
                          f"{rates['postroom'][-1]:,.0f}/s (recorded in the ledger), python "
                          f"{rates['python'][-1]:,.0f}/s (no record of progress)")
        for case in ("postroom", "python"):
            results.append({"case": f"replay.{case}", "letters": args.replay,
                            "runs": [round(r) for r in rates[case]],
                            "letters_per_s": round(statistics.median(rates[case]))})
        replay_ratio = statistics.median(rates["postroom"]) / statistics.median(rates["python"])
        replay_paired = statistics.median(pr / py for pr, py in zip(rates["postroom"],
                                                                     rates["python"]))
    finally:
        for t in created:
            if broker.topic(t) is not None:
                broker.delete_topic(t)

    ratios = [
        {"name": f"stats over {args.letters:,} letters: seconds (target < 10)",
         "value": round(postroom_s, 2), "target": 10.0, "met": postroom_s < 10.0},
        {"name": "stats: postroom speed / python script",
         "value": round(python_s / postroom_s, 2), "target": 3.0,
         "met": python_s / postroom_s >= 3.0},
        {"name": "replay: postroom speed / python script (medians)",
         "value": round(replay_ratio, 2), "paired": round(replay_paired, 2), "target": 3.0,
         "met": replay_ratio >= 3.0},
    ]
    for r in ratios:
        paired = f", paired {r['paired']}" if "paired" in r else ""
        console.print(f"{r['name']}: {r['value']}{paired} ({'met' if r['met'] else 'not met'})")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "dlq", "results": results, "ratios": ratios,
                               "machine": {"cpus": os.cpu_count(),
                                           "python": platform.python_version()}}, indent=2))
    console.print(f"results: {out}")


if __name__ == "__main__":
    main()
