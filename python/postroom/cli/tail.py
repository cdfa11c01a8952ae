"""``postroom tail``: print the messages of a topic as they arrive."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import click

from .._core import Message, redacted_url
from ..kafka import Broker
from ..redis import RedisBroker
from .common import (
    broker_option,
    connect,
    json_option,
    out,
    reports_errors,
    text,
)


@click.command()
@click.argument("topic")
@broker_option
@click.option("--from-beginning", is_flag=True, help="Start at the oldest message.")
@click.option("--limit", type=int, default=None, help="Stop after this many messages.")
@click.option("--idle-timeout", type=float, default=None,
              help="Stop after this many seconds without a message.")
@json_option
@reports_errors
def tail(topic: str, broker_url: str, from_beginning: bool, limit: int | None,
         idle_timeout: float | None, as_json: bool) -> None:
    """Print the messages of a topic as they arrive (Ctrl-C stops)."""
    broker = connect(broker_url)
    info = broker.topic(topic)
    if info is None:
        raise click.ClickException(f"topic {topic!r} does not exist on "
                                   f"{redacted_url(broker_url)}; "
                                   "list topics with `postroom topics`")
    def show(messages: Iterable[Message]) -> None:
        for message in messages:
            record: dict[str, Any] = {
                "topic": message.topic, "partition": message.partition,
                "offset": message.id or message.offset, "timestamp_ms": message.timestamp_ms,
                "key": text(message.key), "value": text(message.value),
                "headers": {k: text(v) for k, v in message.headers},
            }
            if as_json:
                click.echo(json.dumps(record))
            else:
                out.print(f"[dim]{message.partition}:{message.position}[/] "
                          f"[bold]{record['key']}[/] {record['value']}")

    try:
        if isinstance(broker, RedisBroker):
            # No consumer group: reading a stream leaves no trace on it.
            show(broker.follow(topic, from_beginning=from_beginning,
                               idle_timeout=idle_timeout, limit=limit))
            return
        assert isinstance(broker, Broker)  # kafka:// or embedded://: partitions to assign
        start = -2 if from_beginning else -1
        with broker.consumer(f"postroom-tail-{int(time.time() * 1000)}") as consumer:
            consumer.assign([(topic, p, start) for p in range(info.partitions)])
            show(consumer.messages(idle_timeout=idle_timeout, limit=limit))
    except KeyboardInterrupt:
        pass
