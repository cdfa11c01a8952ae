#!/usr/bin/env python3
"""Idempotent consume benchmark: postroom.Processor with the Redis and the PostgreSQL store,
side by side with plain Python consumers doing the same work (confluent-kafka-python plus
redis-py per message and pipelined, or psycopg), on the same broker and services, in one run.

Each case reads the same N 100-byte CloudEvents from its own consumer group, dedupes each
event by id in the store and applies one effect (Redis: a counter, which postroom queues into
the same MULTI/EXEC as the dedupe marks; PostgreSQL: a row in the same transaction as the
dedupe mark), committing offsets after the work. Reports events/s,
CPU seconds per 1,000 events (this process, all threads) and ratios; writes JSON.

    eval "$(scripts/services.sh env)"
    .venv/bin/python bench/consume.py [--events 20000] [--repeat 3]
        [--json bench/results/consume.json]

Never fails on speed: exit 0 unless a case breaks (an event missing or applied twice).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import redis
from confluent_kafka import Consumer
from rich.console import Console
from rich.table import Table
from service_env import drop_keys, env, median_result, paired_ratio, run_rounds

import postroom
from postroom.stores import PostgresStore, RedisStore

console = Console()


def measure(name: str, events: int, run: Callable[[], int]) -> dict[str, Any]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    applied = run()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if applied != events:
        raise SystemExit(f"{name}: applied {applied} effects for {events} events")
    result = {"case": name, "events": events, "seconds": round(wall, 3),
              "events_per_s": round(events / wall), "cpu_s_per_1000": round(cpu / events * 1000, 4)}
    console.print(f"  {name}: {result['events_per_s']:,} events/s, "
                  f"{result['cpu_s_per_1000']} CPU s per 1000")
    return result


def check_redis_effects(r: redis.Redis, key: str, events: int) -> None:
    """The queued INCRs ran exactly once per event (they commit with the dedupe marks)."""
    applied = int(r.get(key) or 0)
    if applied != events:
        raise SystemExit(f"postroom.redis_store: the counter is {applied} for {events} events")
    r.delete(key)


def confluent_consumer(bootstrap: str, topic: str) -> Consumer:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-" + uuid.uuid4().hex[:8],
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    return c


def python_redis_per_message(bootstrap: str, topic: str, redis_url: str, events: int) -> int:
    r = redis.Redis.from_url(redis_url)
    prefix, applied = "bench:py1:" + uuid.uuid4().hex[:6] + ":", 0
    c = confluent_consumer(bootstrap, topic)
    try:
        seen = 0
        while seen < events:
            msg = c.poll(1.0)
            if msg is None or msg.error():
                continue
            seen += 1
            event_id = dict(msg.headers())["ce_id"].decode()
            if r.set(prefix + event_id, "done", nx=True, ex=3600):
                r.incr(prefix + "effects")
                applied += 1
            c.commit(message=msg, asynchronous=True)
        c.commit(asynchronous=False)
    finally:
        c.close()
    return applied


def python_redis_pipelined(bootstrap: str, topic: str, redis_url: str, events: int) -> int:
    r = redis.Redis.from_url(redis_url)
    prefix, applied = "bench:py2:" + uuid.uuid4().hex[:6] + ":", 0
    c = confluent_consumer(bootstrap, topic)
    try:
        seen = 0
        while seen < events:
            batch = [m for m in c.consume(num_messages=500, timeout=1.0) if not m.error()]
            if not batch:
                continue
            seen += len(batch)
            ids = [dict(m.headers())["ce_id"].decode() for m in batch]
            pipe = r.pipeline(transaction=False)
            for i in ids:
                pipe.set(prefix + i, "done", nx=True, ex=3600)
            fresh = sum(1 for ok in pipe.execute() if ok)
            r.incrby(prefix + "effects", fresh)
            applied += fresh
            c.commit(asynchronous=False)
    finally:
        c.close()
    return applied


def python_postgres(bootstrap: str, topic: str, pg_url: str, events: int) -> int:
    table = "bench_py_" + uuid.uuid4().hex[:8]
    applied = 0
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (scope text, key text, PRIMARY KEY (scope, key))")
        conn.execute(f"CREATE TABLE {table}_effects (event_id text)")
        c = confluent_consumer(bootstrap, topic)
        try:
            seen = 0
            while seen < events:
                msg = c.poll(1.0)
                if msg is None or msg.error():
                    continue
                seen += 1
                event_id = dict(msg.headers())["ce_id"].decode()
                with conn.transaction():
                    cur = conn.execute(f"INSERT INTO {table} VALUES ('py', %s) "
                                       "ON CONFLICT DO NOTHING", (event_id,))
                    if cur.rowcount == 1:
                        conn.execute(f"INSERT INTO {table}_effects VALUES (%s)", (event_id,))
                        applied += 1
                c.commit(message=msg, asynchronous=True)
            c.commit(asynchronous=False)
        finally:
            c.close()
            conn.execute(f"DROP TABLE {table}, {table}_effects")
    return applied


def postroom_case(broker: postroom.Broker, topic: str, store: Any, events: int,
                  effect: Callable[[postroom.Event, postroom.HandlerContext], None],
                  concurrency: int = 1) -> int:
    applied = 0
    lock = threading.Lock()

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        nonlocal applied
        effect(event, context)
        with lock:
            applied += 1

    drain(postroom.Processor(broker, name="bench-" + uuid.uuid4().hex[:8], topics=topic,
                             handler=handler, store=store, commit_interval=1.0,
                             concurrency=concurrency), events)
    return applied


def drain(processor: postroom.Processor, events: int) -> None:
    """Runs ``processor`` until ``events`` events finished, then closes it."""
    try:
        while processor.counters.finished < events:
            processor.run_once(0.5)
    finally:
        processor.close()


def postroom_batch_case(broker: postroom.Broker, topic: str, store: Any, events: int,
                        effect: Callable[[list[postroom.Event], postroom.BatchContext], None]
                        ) -> int:
    """The same with a batch handler: one call (and one effect) per polled batch."""
    applied = 0

    def apply_all(batch: list[postroom.Event], context: postroom.BatchContext) -> None:
        nonlocal applied
        effect(batch, context)
        applied += len(batch)

    drain(postroom.Processor(broker, name="bench-" + uuid.uuid4().hex[:8], topics=topic,
                             batch_handler=apply_all, store=store, commit_interval=1.0), events)
    return applied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--json", default="bench/results/consume.json")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of the pipelined Redis cases (alternating order)")
    args = parser.parse_args()
    kafka_url, redis_url, pg_url = (env("POSTROOM_KAFKA_URL"), env("POSTROOM_REDIS_URL"),
                                    env("POSTROOM_PG_URL"))
    broker = postroom.connect(kafka_url)
    topic = "bench-consume-" + uuid.uuid4().hex[:8]
    broker.create_topic(topic, 3)
    console.print(f"producing {args.events:,} CloudEvents of 100 bytes to {topic}")
    with broker.producer() as producer:
        producer.send_batch([(f"k{i % 64}", postroom.Event(type="bench", source="/bench",
                                                           data=b"x" * 100))
                             for i in range(args.events)], topic=topic)
    bootstrap = broker.bootstrap_servers
    r = redis.Redis.from_url(redis_url)
    effects_key = "bench:postroom:" + uuid.uuid4().hex[:8] + ":effects"
    pg_table = "bench_pr_" + uuid.uuid4().hex[:8]

    def redis_effect(event: postroom.Event, context: postroom.HandlerContext) -> None:
        # Queued into the store's transaction: runs in one MULTI/EXEC with the dedupe marks.
        context.redis_command("INCR", effects_key)

    def pg_effect(event: postroom.Event, context: postroom.HandlerContext) -> None:
        context.execute(f"INSERT INTO {pg_table}_effects VALUES ($1)", (event.id,))

    batch_effects_key = effects_key + ":batch"

    def redis_batch_effect(batch: list[postroom.Event], context: postroom.BatchContext) -> None:
        # One INCRBY for the batch, in the MULTI/EXEC of the batch's dedupe marks.
        context.redis_command("INCRBY", batch_effects_key, len(batch))

    def pg_batch_effect(batch: list[postroom.Event], context: postroom.BatchContext) -> None:
        context.execute(f"INSERT INTO {pg_table}_effects "
                        "SELECT jsonb_array_elements_text($1::jsonb)",
                        (json.dumps([e.id for e in batch]),))

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {pg_table}_effects (event_id text)")
    n = args.events
    results = [measure("python.redis.per_message", n,
                       lambda: python_redis_per_message(bootstrap, topic, redis_url, n))]
    drop_keys(r, "bench:py1:*")

    def postroom_redis() -> int:
        applied = postroom_case(broker, topic, RedisStore(
            redis_url, prefix="bench:pr:" + uuid.uuid4().hex[:6] + ":"), n, redis_effect)
        check_redis_effects(r, effects_key, n)
        return applied

    def postroom_redis_lanes() -> int:
        # Three lanes (one per partition): one lane's Redis round trips overlap another's
        # handlers, and the poll overlaps both.
        applied = postroom_case(broker, topic, RedisStore(
            redis_url, prefix="bench:pr:" + uuid.uuid4().hex[:6] + ":"), n, redis_effect,
            concurrency=3)
        check_redis_effects(r, effects_key, n)
        return applied

    def postroom_redis_batches() -> int:
        applied = postroom_batch_case(broker, topic, RedisStore(
            redis_url, prefix="bench:pr:" + uuid.uuid4().hex[:6] + ":"), n, redis_batch_effect)
        check_redis_effects(r, batch_effects_key, n)
        return applied

    # The pipelined cases move by a third between runs on this machine: they run
    # args.repeat rounds in alternating order; the median is reported, and the median of the
    # per-round ratios ("paired").
    redis_cases: dict[str, Callable[[], int]] = {
        "python.redis.pipelined": lambda: python_redis_pipelined(bootstrap, topic, redis_url, n),
        "postroom.redis_store": postroom_redis,
        "postroom.redis_store.concurrency3": postroom_redis_lanes,
        "postroom.redis_store.batch_handler": postroom_redis_batches,
    }
    rounds = run_rounds({name: (lambda name=name, run=run: measure(name, n, run))
                         for name, run in redis_cases.items()}, args.repeat,
                        lambda: drop_keys(r, "bench:py2:*", "bench:pr:*"))
    results += [median_result(runs, "events_per_s") for runs in rounds.values()]

    def paired(case: str) -> float:
        return paired_ratio(rounds["python.redis.pipelined"], rounds[case], "events_per_s")

    results += [
        measure("python.postgres", n, lambda: python_postgres(bootstrap, topic, pg_url, n)),
        measure("postroom.postgres_store", n,
                lambda: postroom_case(broker, topic, PostgresStore(pg_url, table=pg_table), n,
                                      pg_effect)),
        # Three lanes (one per partition): their PostgreSQL round trips overlap.
        measure("postroom.postgres_store.concurrency3", n,
                lambda: postroom_case(broker, topic, PostgresStore(pg_url, table=pg_table + "_c3"),
                                      n, pg_effect, concurrency=3)),
        measure("postroom.postgres_store.batch_handler", n,
                lambda: postroom_batch_case(broker, topic,
                                            PostgresStore(pg_url, table=pg_table + "_b"), n,
                                            pg_batch_effect)),
    ]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {pg_table}_effects, {pg_table}, {pg_table}_c3, "
                     f"{pg_table}_b")
    broker.delete_topic(topic)

    rate = {x["case"]: x["events_per_s"] for x in results}
    ratios = [
        {"name": "postroom redis / python redis per message",
         "value": round(rate["postroom.redis_store"] / rate["python.redis.per_message"], 2),
         "target": 5.0},
        {"name": "postroom redis / python redis pipelined",
         "value": round(rate["postroom.redis_store"] / rate["python.redis.pipelined"], 2),
         "paired": paired("postroom.redis_store"), "target": 2.0},
        {"name": "postroom postgres / python psycopg per message",
         "value": round(rate["postroom.postgres_store"] / rate["python.postgres"], 2),
         "target": 5.0},
        {"name": "postroom redis, concurrency=3 / python redis pipelined",
         "value": round(rate["postroom.redis_store.concurrency3"]
                        / rate["python.redis.pipelined"], 2),
         "paired": paired("postroom.redis_store.concurrency3"), "target": 2.0},
        {"name": "postroom redis, batch handler / python redis pipelined",
         "value": round(rate["postroom.redis_store.batch_handler"]
                        / rate["python.redis.pipelined"], 2),
         "paired": paired("postroom.redis_store.batch_handler"), "target": 2.0},
        {"name": "postroom postgres, batch handler / python psycopg per message",
         "value": round(rate["postroom.postgres_store.batch_handler"] / rate["python.postgres"],
                        2),
         "target": 5.0},
        {"name": "postroom postgres, concurrency=3 / python psycopg per message",
         "value": round(rate["postroom.postgres_store.concurrency3"] / rate["python.postgres"],
                        2),
         "target": 5.0},
    ]
    for ratio in ratios:
        ratio["met"] = ratio["value"] >= ratio["target"]
    table = Table(title=f"idempotent consume, {n:,} events of 100 bytes")
    for column in ("case", "events/s", "CPU s / 1000 events"):
        table.add_column(column)
    for x in results:
        table.add_row(x["case"], f"{x['events_per_s']:,}", str(x["cpu_s_per_1000"]))
    console.print(table)
    for ratio in ratios:
        pair = f", paired {ratio['paired']}x" if "paired" in ratio else ""
        console.print(f"{ratio['name']}: {ratio['value']}x{pair} (target {ratio['target']}x, "
                      f"{'met' if ratio['met'] else 'not met'})")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "consume", "events": n, "repeat": args.repeat,
                               "results": results,
                               "ratios": ratios, "machine": {"cpus": os.cpu_count(),
                                                             "python": platform.python_version()}},
                              indent=2))
    console.print(f"results: {out}")


if __name__ == "__main__":
    main()
