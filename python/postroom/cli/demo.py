"""``postroom demo``: produce CloudEvents and consume them back."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from typing import Any

import click
from rich.table import Table

from .._core import Event, redacted_url
from .common import (
    broker_option,
    connect,
    emit_json,
    json_option,
    out,
    reports_errors,
)


@click.command()
@broker_option
@click.option("--events", default=30, show_default=True, help="How many events to send.")
@click.option("--topic", default="postroom-demo", show_default=True)
@click.option("--keys", default=5, show_default=True, help="Distinct keys (customers).")
@json_option
@reports_errors
def demo(broker_url: str, events: int, topic: str, keys: int, as_json: bool) -> None:
    """Produce CloudEvents and consume them back, printing what happened."""
    started = time.monotonic()
    broker = connect(broker_url)
    broker.create_topic(topic, 3, exist_ok=True)
    run_id = f"{int(time.time() * 1000)}"
    sent: list[dict[str, Any]] = []
    with broker.producer() as producer:
        batch = [
            (f"customer-{i % keys}",
             Event(type="com.example.order.placed", source="/postroom/demo",
                   subject=f"order-{i}", data={"order": i, "run": run_id}))
            for i in range(events)
        ]
        result = producer.send_batch(batch, topic=topic)
        for (key, event), report in zip(batch, result.reports):
            sent.append({"id": event.id, "key": key, "partition": report.partition,
                         "offset": report.id or report.offset})
    sent_ids = {s["id"] for s in sent}

    received: list[dict[str, Any]] = []
    order_ok = True
    last_seq: dict[str, int] = {}
    with broker.consumer(f"postroom-demo-{run_id}", topic) as consumer:
        for message in consumer.messages(idle_timeout=2.0):
            consumer.mark_done(message)
            event = message.event()
            if event.id not in sent_ids:
                continue  # an earlier demo run on the same broker
            seq = int(event.json()["order"])
            key = (message.key or b"").decode()
            if seq <= last_seq.get(key, -1):
                order_ok = False
            last_seq[key] = seq
            received.append({"id": event.id, "key": key, "partition": message.partition,
                             "offset": message.id or message.offset, "type": event.type,
                             "subject": event.subject})
            if len(received) == len(sent):
                break
        committed = consumer.commit()

    elapsed = time.monotonic() - started
    summary = {
        "broker": redacted_url(broker_url), "topic": topic, "sent": len(sent),
        "received": len(received),
        "lost": len(sent_ids - {r["id"] for r in received}),
        "duplicates": len(received) - len({r["id"] for r in received}),
        "per_key_order_kept": order_ok, "committed": committed, "seconds": round(elapsed, 2),
    }
    if as_json:
        emit_json({"summary": summary, "received": received})
    else:
        per_partition: dict[int, int] = defaultdict(int)
        for r in received:
            per_partition[r["partition"]] += 1
        table = Table(title=f"postroom demo on {redacted_url(broker_url)}: {topic}")
        for column in ("key", "partition", "offset", "subject", "id"):
            table.add_column(column)
        for r in received[:15]:
            table.add_row(r["key"], str(r["partition"]), str(r["offset"]), r["subject"] or "",
                          r["id"])
        if len(received) > 15:
            table.add_row("…", "", "", f"{len(received) - 15} more", "")
        out.print(table)
        partitions = getattr(broker.topic(topic), "partitions", 1)
        out.print(f"sent {len(sent)} CloudEvents with {keys} keys over {partitions} partitions "
                  f"({', '.join(f'p{p}: {n}' for p, n in sorted(per_partition.items()))})")
        out.print(f"received {len(received)}; lost {summary['lost']}; duplicates "
                  f"{summary['duplicates']}; per-key order "
                  f"{'kept' if order_ok else 'VIOLATED'}; {_committed_text(committed)}; "
                  f"{elapsed:.1f} s")
    if summary["lost"] or summary["duplicates"] or not order_ok:
        sys.exit(1)


def _committed_text(committed: list[tuple[str, int, int]]) -> str:
    if not committed:
        return "committed nothing new"
    if committed[0][0] == "*":  # Redis Streams: entries acknowledged
        return f"acknowledged {sum(n for _, _, n in committed)} entries"
    return "committed " + ", ".join(f"{t}[{p}]@{o}" for t, p, o in committed)
