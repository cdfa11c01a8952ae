"""A processor process for the fault tests: applies events into a ledger in the store's own
database (an unguarded effect log: no uniqueness, so a duplicate effect shows up as a second
entry) and appends every delivery to a text file. The store is a SQLite file path, a
postgresql:// URL or a redis:// URL (the ledger is then a Redis list); an optional last
argument sets the processor's concurrency. The broker URL may be kafka:// or redis://
(POSTROOM_FAULT_CONSUMER then names the stream consumer). Exits 0 when the topic has been
idle for 3 s."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import postroom
from postroom.stores import IdempotencyStore, PostgresStore, RedisStore, SQLiteStore


def consumer_properties(url: str) -> dict[str, str]:
    """Kafka: a short session; Redis Streams: quick claims of a dead member's pending
    entries, and the member name from POSTROOM_FAULT_CONSUMER when the test fixes it."""
    if not url.startswith("redis://"):
        return {"session.timeout.ms": "6000"}
    props = {"claim_min_idle_ms": "1500", "claim_interval_ms": "200"}
    if os.environ.get("POSTROOM_FAULT_CONSUMER"):
        props["consumer"] = os.environ["POSTROOM_FAULT_CONSUMER"]
    return props


def main() -> None:
    url, topic, group, db, deliveries, delay = sys.argv[1:7]
    concurrency = int(sys.argv[7]) if len(sys.argv) > 7 else 1
    postgres = db.startswith("postgresql://")
    redis_store = db.startswith("redis://")
    store: IdempotencyStore
    if redis_store:
        # The effect log is a Redis list, pushed through the store's transaction (one
        # MULTI/EXEC with the dedupe marks); a duplicate effect shows as a repeated entry.
        store = RedisStore(db, retention=3600, prefix=f"fault:{topic}:marks:")
    elif postgres:
        ledger = "ledger_" + topic.replace("-", "_")
        store = PostgresStore(db, table="marks_" + topic.replace("-", "_"))
        create = f"CREATE TABLE IF NOT EXISTS {ledger} (event_id text, partition int)"
        insert = f"INSERT INTO {ledger} VALUES ($1, $2)"
    else:
        store = SQLiteStore(db)
        create = "CREATE TABLE IF NOT EXISTS ledger (event_id TEXT, partition INTEGER)"
        insert = "INSERT INTO ledger VALUES (?, ?)"
    pause = float(delay)

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        with open(deliveries, "a") as log:
            log.write(event.id + "\n")
        if event.type == "poison":
            raise ValueError("poison event")
        if pause:
            time.sleep(pause)
        if redis_store:
            context.redis_command("RPUSH", f"fault:{topic}:ledger", event.id)
            return
        context.execute(create)
        context.execute(insert, (event.id, context.message.partition))

    processor = postroom.Processor(
        url, name="fault-worker", group=group, topics=topic, handler=handler, store=store,
        retry=postroom.RetryPolicy(max_attempts=2, initial_delay=0.05),
        blocked_backoff_max=1.0,
        commit_interval=0.0, batch_size=10, concurrency=concurrency,
        consumer_properties=consumer_properties(url))
    # Samples the assignment while running, so a test can see a rebalance happen.
    assignments: list[list[str]] = []
    done = threading.Event()

    def sample_assignment() -> None:
        while not done.wait(0.05):
            current = sorted(f"{t}[{p}]" for t, p in processor.counters.lag)
            if current and (not assignments or assignments[-1] != current):
                assignments.append(current)

    sampler = threading.Thread(target=sample_assignment, daemon=True)
    sampler.start()
    print("started", flush=True)
    counters = processor.run(idle_timeout=3.0)
    done.set()
    sampler.join()
    processor.close()
    print(json.dumps({"processed": counters.processed, "duplicates": counters.duplicates,
                      "dead_lettered": counters.dead_lettered, "assignments": assignments}),
          flush=True)


if __name__ == "__main__":
    main()
