#!/usr/bin/env python3
"""Redis Streams benchmark: adding (XADD) and reading (XREADGROUP + XACK) entries through
postroom from Python, side by side with redis-py using the hiredis parser, per call and
pipelined, on the same Redis, in one run; then idempotent consume on a stream (postroom's
Processor with the Redis store, versus redis-py doing the same dedupe and effect pipelined).

Every case moves the same N entries of 100 bytes in batches of --batch (the pipelined and
postroom cases) or one at a time (the per-call cases, over at most --per-call entries, since
they are slow). Reports entries/s and ratios; writes JSON.

    eval "$(scripts/services.sh env)"
    .venv/bin/python bench/streams.py [--entries 200000] [--repeat 3]
        [--json bench/results/streams.json]

Never fails on speed: exit 0 unless a case breaks (an entry missing or applied twice).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.utils import HIREDIS_AVAILABLE
from rich.console import Console
from rich.table import Table
from service_env import drop_keys, env, median_result, paired_ratio, run_rounds

import postroom
from postroom.redis import RedisBroker
from postroom.stores import RedisStore

console = Console()
VALUE = b"x" * 100


def measure(name: str, entries: int, run: Callable[[], int]) -> dict[str, Any]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    moved = run()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if moved != entries:
        raise SystemExit(f"{name}: moved {moved} entries, expected {entries}")
    result = {"case": name, "entries": entries, "seconds": round(wall, 3),
              "entries_per_s": round(entries / wall),
              "cpu_s_per_1000": round(cpu / entries * 1000, 4)}
    console.print(f"  {name}: {result['entries_per_s']:,} entries/s")
    return result


def timed(cases: dict[str, Callable[[], int]],
          entries: int) -> dict[str, Callable[[], dict[str, Any]]]:
    """Each case as a call that measures it moving ``entries`` entries."""
    return {name: (lambda name=name, run=run: measure(name, entries, run))
            for name, run in cases.items()}


def batches(n: int, size: int) -> list[int]:
    return [min(size, n - i) for i in range(0, n, size)]


# -- add ------------------------------------------------------------------------------------

def redis_py_add_per_call(r: redis.Redis, stream: str, n: int) -> int:
    for _ in range(n):
        r.xadd(stream, {"data": VALUE})
    return int(r.xlen(stream))


def redis_py_add_pipelined(r: redis.Redis, stream: str, n: int, size: int) -> int:
    """Returns how many entries the stream gained (rounds add to the same stream)."""
    before = int(r.xlen(stream))
    for k in batches(n, size):
        pipe = r.pipeline(transaction=False)
        for _ in range(k):
            pipe.xadd(stream, {"data": VALUE})
        pipe.execute()
    return int(r.xlen(stream)) - before


def postroom_add(broker: RedisBroker, stream: str, n: int, size: int) -> int:
    """Batches sent without waiting, at most 4 in flight, each waited for in turn (as the
    produce benchmark does on Kafka): the next batch is prepared while Redis adds one."""
    before = broker.length(stream)
    with broker.producer() as producer:
        in_flight: deque[postroom.BatchResult] = deque()
        for k in batches(n, size):
            if len(in_flight) == 4:
                finish(producer, in_flight.popleft())
            in_flight.append(producer.send_batch([VALUE] * k, topic=stream, wait=False))
        while in_flight:
            finish(producer, in_flight.popleft())
    return broker.length(stream) - before


def finish(producer: postroom.Producer, batch: postroom.BatchResult) -> None:
    producer.wait(batch)
    batch.raise_for_failures()


# -- read and acknowledge -------------------------------------------------------------------

def redis_py_read_per_call(r: redis.Redis, stream: str, n: int) -> int:
    group = "bench-" + uuid.uuid4().hex[:8]
    r.xgroup_create(stream, group, id="0")
    read = 0
    while read < n:
        reply = r.xreadgroup(group, "c", {stream: ">"}, count=1, block=1000)
        for _, entries in reply:
            for entry_id, _fields in entries:
                r.xack(stream, group, entry_id)
                read += 1
    return read


def redis_py_read_pipelined(r: redis.Redis, stream: str, n: int, size: int) -> int:
    group = "bench-" + uuid.uuid4().hex[:8]
    r.xgroup_create(stream, group, id="0")
    read = 0
    while read < n:
        reply = r.xreadgroup(group, "c", {stream: ">"}, count=size, block=1000)
        for _, entries in reply:
            if entries:
                r.xack(stream, group, *[entry_id for entry_id, _ in entries])
                read += len(entries)
    return read


def postroom_read(broker: RedisBroker, stream: str, n: int, size: int) -> int:
    read = 0
    with broker.consumer("bench-" + uuid.uuid4().hex[:8], stream) as consumer:
        while read < n:
            batch = consumer.poll_batch(size, timeout=1.0)
            for m in batch:
                consumer.mark_done(m)
            consumer.commit()
            read += len(batch)
    return read


# -- idempotent consume ---------------------------------------------------------------------

def redis_py_idempotent(r: redis.Redis, stream: str, n: int, size: int, counter: str) -> int:
    """What a careful hand-written consumer does: claim each event id with SET NX, apply the
    effect (one INCRBY for the batch) and the done marks in one MULTI/EXEC, then XACK; all
    pipelined per batch."""
    group = "bench-" + uuid.uuid4().hex[:8]
    prefix = "bench:py:" + uuid.uuid4().hex[:6] + ":"
    r.xgroup_create(stream, group, id="0")
    read = 0
    while read < n:
        reply = r.xreadgroup(group, "c", {stream: ">"}, count=size, block=1000)
        for _, entries in reply:
            if not entries:
                continue
            ids = [fields[b"ce_id"].decode() for _, fields in entries]
            claim = r.pipeline(transaction=False)
            for event_id in ids:
                claim.set(prefix + event_id, "pending", nx=True, px=60_000)
            claimed = claim.execute()
            apply = r.pipeline(transaction=True)
            for event_id, fresh in zip(ids, claimed):
                if fresh:
                    apply.set(prefix + event_id, "done", px=7 * 24 * 3600 * 1000)
            apply.incrby(counter, sum(1 for fresh in claimed if fresh))
            apply.execute()
            r.xack(stream, group, *[entry_id for entry_id, _ in entries])
            read += len(entries)
    return int(r.get(counter) or 0)


def postroom_idempotent(broker: RedisBroker, stream: str, n: int, size: int,
                        redis_url: str, counter: str) -> int:
    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        context.redis_command("INCR", counter)  # one MULTI/EXEC with the dedupe marks

    store = RedisStore(redis_url, prefix="bench:pr:" + uuid.uuid4().hex[:6] + ":")
    with postroom.Processor(broker, name="bench-" + uuid.uuid4().hex[:8], topics=stream,
                            handler=handler, store=store, batch_size=size) as processor:
        processor.run(max_events=n, handle_signals=False)
    return int(redis.Redis.from_url(redis_url).get(counter) or 0)


def postroom_idempotent_batch(broker: RedisBroker, stream: str, n: int, size: int,
                              redis_url: str, counter: str) -> int:
    def apply_all(events: list[postroom.Event], context: postroom.BatchContext) -> None:
        context.redis_command("INCRBY", counter, len(events))  # one per batch, with the marks

    store = RedisStore(redis_url, prefix="bench:pr:" + uuid.uuid4().hex[:6] + ":")
    with postroom.Processor(broker, name="bench-" + uuid.uuid4().hex[:8], topics=stream,
                            batch_handler=apply_all, store=store,
                            batch_size=size) as processor:
        processor.run(max_events=n, handle_signals=False)
    return int(redis.Redis.from_url(redis_url).get(counter) or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--per-call", type=int, default=20_000,
                        help="entries for the one-at-a-time cases")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of the batch cases (alternating order)")
    parser.add_argument("--json", default="bench/results/streams.json")
    args = parser.parse_args()
    redis_url = env("POSTROOM_REDIS_URL")
    if not HIREDIS_AVAILABLE:
        raise SystemExit("redis-py runs without the hiredis parser: pip install hiredis")
    broker = postroom.connect(redis_url)
    assert isinstance(broker, RedisBroker)
    r = redis.Redis.from_url(redis_url)
    tag = uuid.uuid4().hex[:8]
    n, small, size = args.entries, min(args.per_call, args.entries), args.batch
    streams = {name: f"bench-{name}-{tag}" for name in ("pc", "pipe", "pr")}
    console.print(f"Redis Streams: {n:,} entries of 100 bytes, batches of {size} "
                  f"(per-call cases: {small:,}); redis-py {redis.__version__} with hiredis; "
                  f"{args.repeat} rounds of the batch cases, the order alternating")
    results = [
        measure("add.redis_py.per_call", small,
                lambda: redis_py_add_per_call(r, streams["pc"], small)),
        measure("read.redis_py.per_call", small,
                lambda: redis_py_read_per_call(r, streams["pc"], small)),
    ]
    # The batch cases move by a third between runs on this machine: rounds in alternating
    # order, each adding to fresh streams and reading them back; medians, and the median of
    # the per-round ratios ("paired").
    add_rounds = run_rounds(timed({
        "add.redis_py.pipelined": lambda: redis_py_add_pipelined(r, streams["pipe"], n, size),
        "add.postroom.batch": lambda: postroom_add(broker, streams["pr"], n, size),
    }, n), args.repeat)
    # Each read case reads the first n entries of its stream in a new group.
    read_rounds = run_rounds(timed({
        "read.redis_py.pipelined": lambda: redis_py_read_pipelined(r, streams["pipe"], n, size),
        "read.postroom.batch": lambda: postroom_read(broker, streams["pr"], n, size),
    }, n), args.repeat)
    rounds = {**add_rounds, **read_rounds}
    results += [median_result(runs, "entries_per_s") for runs in rounds.values()]
    # Idempotent consume: CloudEvents (the id is the dedupe key), same stream for both.
    events = f"bench-events-{tag}"
    m = min(n, 50_000)
    with broker.producer() as producer:
        for k in batches(m, size):
            producer.send_batch([postroom.Event(type="bench", source="/bench", data=VALUE)
                                 for _ in range(k)], topic=events)
    py_counter, pr_counter = f"bench:py:{tag}:effects", f"bench:pr:{tag}:effects"
    batch_counter = f"bench:pr:{tag}:batch-effects"
    results += [
        measure("idempotent.redis_py.pipelined", m,
                lambda: redis_py_idempotent(r, events, m, size, py_counter)),
        measure("idempotent.postroom.processor", m,
                lambda: postroom_idempotent(broker, events, m, 500, redis_url, pr_counter)),
        measure("idempotent.postroom.batch_handler", m,
                lambda: postroom_idempotent_batch(broker, events, m, 500, redis_url,
                                                  batch_counter)),
    ]
    r.delete(py_counter, pr_counter, batch_counter, events, *streams.values())
    drop_keys(r, "bench:py:*", "bench:pr:*")

    rate = {x["case"]: x["entries_per_s"] for x in results}
    ratios = [
        {"name": "batch add: postroom / redis-py pipelined",
         "value": round(rate["add.postroom.batch"] / rate["add.redis_py.pipelined"], 2),
         "paired": paired_ratio(rounds["add.redis_py.pipelined"], rounds["add.postroom.batch"],
                                "entries_per_s"),
         "target": 2.0},
        {"name": "batch read+ack: postroom / redis-py pipelined",
         "value": round(rate["read.postroom.batch"] / rate["read.redis_py.pipelined"], 2),
         "paired": paired_ratio(rounds["read.redis_py.pipelined"],
                                rounds["read.postroom.batch"], "entries_per_s"),
         "target": 2.0},
        {"name": "add: postroom batch / redis-py per call",
         "value": round(rate["add.postroom.batch"] / rate["add.redis_py.per_call"], 2),
         "target": None},
        {"name": "read+ack: postroom batch / redis-py per call",
         "value": round(rate["read.postroom.batch"] / rate["read.redis_py.per_call"], 2),
         "target": None},
        {"name": "idempotent consume: postroom Processor / redis-py pipelined",
         "value": round(rate["idempotent.postroom.processor"]
                        / rate["idempotent.redis_py.pipelined"], 2),
         "target": None},
        {"name": "idempotent consume: postroom batch handler / redis-py pipelined",
         "value": round(rate["idempotent.postroom.batch_handler"]
                        / rate["idempotent.redis_py.pipelined"], 2),
         "target": None},
    ]
    for ratio in ratios:
        ratio["met"] = None if ratio["target"] is None else ratio["value"] >= ratio["target"]
    table = Table(title="Redis Streams from Python")
    for column in ("case", "entries", "entries/s", "CPU s / 1000"):
        table.add_column(column)
    for x in results:
        table.add_row(x["case"], f"{x['entries']:,}", f"{x['entries_per_s']:,}",
                      str(x["cpu_s_per_1000"]))
    console.print(table)
    for ratio in ratios:
        verdict = ("" if ratio["target"] is None else
                   f" (target {ratio['target']}x, {'met' if ratio['met'] else 'not met'})")
        pair = f", paired {ratio['paired']}x" if "paired" in ratio else ""
        console.print(f"{ratio['name']}: {ratio['value']}x{pair}{verdict}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "streams", "entries": n, "batch": size,
                               "repeat": args.repeat,
                               "results": results, "ratios": ratios,
                               "machine": {"cpus": os.cpu_count(),
                                           "python": platform.python_version(),
                                           "redis_py": redis.__version__}}, indent=2))
    console.print(f"results: {out}")


if __name__ == "__main__":
    main()
