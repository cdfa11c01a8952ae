"""Brokers, producers and consumers: the Kafka-protocol transports (kafka:// and
embedded://)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

from . import _core
from ._core import BatchResult, DeliveryReport, Event, Message, TopicInfo
from .broker import (
    BrokerBase,
    Bytes,
    ConsumerBase,
    EventMode,
    HeaderPairs,
    PartitionCallback,
    ProducerBase,
    connect,
    parse,
)
from .broker import shown as _shown
from .errors import BrokerTimeoutError, ConfigurationError, UsageError


class Broker(BrokerBase):
    """A Kafka broker (cluster), or the embedded one, and the clients that talk to it.

    Thread-safety: a Broker may be shared between threads; each producer and consumer it
    creates states its own rules.
    """

    def __init__(self, url: str | _core.BrokerUrl, *, client_id: str = "postroom",
                 timeout: float = 15.0, properties: Mapping[str, str] | None = None) -> None:
        parsed = url if isinstance(url, _core.BrokerUrl) else parse(url)
        if parsed.scheme not in ("kafka", "embedded"):
            raise ConfigurationError(
                f"broker URL {_shown(parsed.text)}: a Redis server is opened with "
                "postroom.connect(url) (a RedisBroker)")
        self.url = parsed.text
        self._parsed = parsed
        self.client_id = client_id
        self.timeout = timeout
        self.properties = dict(properties or {})
        self._admin = _core.KafkaAdmin(broker_url=self.url, client_id=f"{client_id}-admin",
                                       timeout=timeout, properties=self.properties)

    @property
    def is_embedded(self) -> bool:
        return bool(self._parsed.scheme == "embedded")

    @property
    def bootstrap_servers(self) -> str:
        """host:port list that other Kafka clients (in any process) can connect to."""
        if self.is_embedded:
            return str(_core.EmbeddedBroker.shared(self._parsed.embedded_name).bootstrap_servers)
        return str(self._parsed.bootstrap_servers)

    # -- clients ---------------------------------------------------------------------------

    def producer(self, *, idempotent: bool = True, acks: str = "all", compression: str = "none",
                 linger: float = 0.005, delivery_timeout: float = 30.0, close_timeout: float = 10.0,
                 properties: Mapping[str, str] | None = None) -> Producer:
        """A producer (idempotent by default). Use it as a context manager."""
        return Producer(self, idempotent=idempotent, acks=acks, compression=compression,
                        linger=linger, delivery_timeout=delivery_timeout,
                        close_timeout=close_timeout, properties=properties)

    def consumer(self, group: str, topics: str | Iterable[str] | None = None, *,
                 offset_reset: Literal["earliest", "latest"] = "earliest",
                 session_timeout: float = 10.0, max_poll_interval: float = 300.0,
                 on_assigned: PartitionCallback | None = None,
                 on_revoked: PartitionCallback | None = None,
                 on_lost: PartitionCallback | None = None,
                 properties: Mapping[str, str] | None = None) -> Consumer:
        """A consumer in consumer group ``group``, subscribed to ``topics`` if given."""
        consumer = Consumer(self, group, offset_reset=offset_reset,
                            session_timeout=session_timeout, max_poll_interval=max_poll_interval,
                            properties=properties)
        if topics is not None:
            consumer.subscribe(topics, on_assigned=on_assigned, on_revoked=on_revoked,
                               on_lost=on_lost)
        return consumer

    # -- topics ----------------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 3, *, replication_factor: int = 1,
                     config: Mapping[str, str] | None = None, exist_ok: bool = False) -> None:
        self._admin.create_topic(name, partitions, replication_factor, dict(config or {}),
                                 exist_ok)

    def delete_topic(self, name: str) -> None:
        self._admin.delete_topic(name)

    def topics(self) -> list[TopicInfo]:
        """User topics, sorted by name."""
        return list(self._admin.list_topics())

    def topic(self, name: str) -> TopicInfo | None:
        return self._admin.describe_topic(name)

    def watermarks(self, topic: str, partition: int = 0) -> tuple[int, int]:
        """(low, high): the first offset still kept and the offset of the next message."""
        low, high = self._admin.watermarks(topic, partition)
        return int(low), int(high)

    def ping(self) -> None:
        """Round trip to the broker; raises BrokerTimeoutError if it does not answer."""
        self._admin.ping()

    # -- lag ------------------------------------------------------------------------------

    def lag(self, group: str, topics: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Per partition of ``topics``: the group's committed offset (None when it has none
        yet), the end of the log and the lag (from the low watermark when nothing is
        committed)."""
        if topics is None:
            raise UsageError("name the topics the group reads: postroom lag GROUP TOPIC...")
        partitions: list[tuple[str, int]] = []
        for topic in topics:
            info = self.topic(topic)
            if info is None:
                raise UsageError(f"topic {topic!r} does not exist on {self.redacted_url}; list "
                                 "topics with `postroom topics`")
            partitions += [(topic, p) for p in range(info.partitions)]
        with self.consumer(group) as consumer:  # never subscribes: reads offsets only
            committed = {(t, p): o for t, p, o in consumer.committed(partitions)}
        rows = []
        for topic, p in partitions:
            low, high = self.watermarks(topic, p)
            position = committed.get((topic, p), -1001)
            behind = high - (position if position >= 0 else low)
            rows.append({"topic": topic, "partition": p,
                         "committed": position if position >= 0 else None, "end": high,
                         "lag": behind, "pending": None})
        return rows


class Producer(ProducerBase):
    """Sends messages and CloudEvents. Idempotent by default: retries never duplicate or
    reorder messages within this producer's session; the key decides the partition.

    Thread-safety: methods may be called from several threads. Delivery callbacks run on
    the thread that calls poll(), flush(), send() or send_batch().
    """

    def __init__(self, broker: BrokerBase, *, idempotent: bool = True, acks: str = "all",
                 compression: str = "none", linger: float = 0.005,
                 delivery_timeout: float = 30.0, close_timeout: float = 10.0,
                 properties: Mapping[str, str] | None = None) -> None:
        merged = {**broker.properties, **(properties or {})}
        self.broker = broker
        self._p = _core.KafkaProducer(
            broker_url=broker.url, client_id=broker.client_id, idempotent=idempotent, acks=acks,
            compression=compression, linger=linger, delivery_timeout=delivery_timeout,
            close_timeout=close_timeout, properties=merged)

    def __repr__(self) -> str:
        state = "closed" if self._p.closed else f"in_flight={self._p.in_flight}"
        return f"Producer({self.broker.redacted_url!r}, {state})"

    def send(self, value: Event | Bytes | None, *, topic: str, key: Bytes | None = None,
             headers: HeaderPairs | None = None, partition: int | None = None,
             mode: EventMode = "binary", timeout: float | None = None) -> DeliveryReport:
        """Sends one message (or Event) and waits for the broker's acknowledgement.

        Raises the matching postroom error when the message cannot be delivered.
        """
        return self._p.send(topic, value, key=key, headers=headers, partition=partition,
                            mode=mode, timeout=timeout)

    def produce(self, value: Event | Bytes | None, *, topic: str, key: Bytes | None = None,
                headers: HeaderPairs | None = None, partition: int | None = None,
                mode: EventMode = "binary",
                on_delivery: Callable[[DeliveryReport], Any] | None = None) -> None:
        """Queues one message without waiting; ``on_delivery`` gets its report during a
        later poll() or flush()."""
        self._p.produce(topic, value, key=key, headers=headers, partition=partition, mode=mode,
                        on_delivery=on_delivery)

    def send_batch(self, items: Iterable[Any], *, topic: str, key: Bytes | None = None,
                   mode: EventMode = "binary", wait: bool = True,
                   raise_on_error: bool = True) -> BatchResult:
        """Sends many messages in one call into the core.

        Items are Events, values (bytes/str), or ``(key, value)`` / ``(key, value,
        headers)`` tuples whose value may be an Event. Returns the delivery report of every
        message, in order. With ``raise_on_error`` the first failure is raised after the
        whole batch was reported.
        """
        result = self._p.send_batch(topic, items, key=key, mode=mode, wait=wait)
        if wait and raise_on_error:
            result.raise_for_failures()
        return result

    def wait(self, batch: BatchResult, timeout: float | None = None) -> bool:
        """Waits for a batch sent with ``wait=False``; True when every report arrived."""
        return bool(self._p.wait(batch, timeout))

    def poll(self, timeout: float = 0.0) -> int:
        """Serves delivery reports; returns how many were served."""
        return int(self._p.poll(timeout))

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every queued message is reported; True if none is left."""
        return bool(self._p.flush(timeout))

    @property
    def in_flight(self) -> int:
        return int(self._p.in_flight)

    @property
    def idempotence_enabled(self) -> bool:
        """True once the broker granted this producer an id for idempotent delivery."""
        return bool(self._p.idempotence_enabled)

    @property
    def closed(self) -> bool:
        return bool(self._p.closed)

    def close(self, timeout: float | None = None) -> None:
        """Flushes (up to ``timeout``, default close_timeout), then releases the client.
        Messages still undelivered get a failure report; none is dropped silently."""
        self._p.close(timeout)


class Consumer(ConsumerBase):
    """Reads from topics in a consumer group and commits only what was marked done.

    Per partition, commit() stops at the lowest delivered offset not yet marked done, so
    a commit never runs ahead of unfinished work. Iterating yields messages forever;
    ``messages(idle_timeout=...)`` stops when the topics go quiet.

    Thread-safety: one thread polls; mark_done() may be called from any thread.
    Rebalance callbacks run on the polling thread.
    """

    def __init__(self, broker: BrokerBase, group: str, *,
                 offset_reset: Literal["earliest", "latest"] = "earliest",
                 session_timeout: float = 10.0, max_poll_interval: float = 300.0,
                 properties: Mapping[str, str] | None = None) -> None:
        merged = {**broker.properties, **(properties or {})}
        self.broker = broker
        self.group = group
        self._c = _core.KafkaConsumer(
            broker_url=broker.url, client_id=broker.client_id, group_id=group,
            offset_reset=offset_reset, session_timeout=session_timeout,
            max_poll_interval=max_poll_interval, properties=merged)

    def __repr__(self) -> str:
        return f"Consumer({self.broker.redacted_url!r}, group={self.group!r})"

    def __iter__(self) -> Iterator[Message]:
        while True:
            yield from self._c.poll_batch(500, None)

    def subscribe(self, topics: str | Iterable[str], *,
                  on_assigned: PartitionCallback | None = None,
                  on_revoked: PartitionCallback | None = None,
                  on_lost: PartitionCallback | None = None) -> None:
        names = [topics] if isinstance(topics, str) else list(topics)
        self._c.subscribe(names, on_assigned=on_assigned, on_revoked=on_revoked, on_lost=on_lost)

    def assign(self, partitions: Iterable[tuple[str, int] | tuple[str, int, int]]) -> None:
        """Reads the given partitions without group rebalancing; an optional third item
        is the start offset (-2 beginning, -1 end)."""
        self._c.assign(list(partitions))

    def poll(self, timeout: float | None = None) -> Message | None:
        """The next message, or None after ``timeout`` seconds (None waits forever)."""
        return self._c.poll(timeout)

    def poll_batch(self, max_messages: int = 500, timeout: float | None = None) -> list[Message]:
        """Up to ``max_messages`` at once, in one call into the core."""
        return list(self._c.poll_batch(max_messages, timeout))

    def messages(self, *, idle_timeout: float | None = None, limit: int | None = None,
                 batch_size: int = 500, join_timeout: float = 60.0) -> Iterator[Message]:
        """Yields messages until none arrived for ``idle_timeout`` seconds or ``limit``
        messages were yielded. The idle clock starts once the group gave this consumer its
        partitions (joining may take a few seconds; ``join_timeout`` bounds it)."""
        count = 0
        started = time.monotonic()
        last_activity: float | None = None
        while limit is None or count < limit:
            want = batch_size if limit is None else min(batch_size, limit - count)
            batch = self._c.poll_batch(want, 0.1)
            now = time.monotonic()
            if batch:
                last_activity = now
                yield from batch
                count += len(batch)
                continue
            if last_activity is None:
                if self._c.assignment():
                    last_activity = now
                elif now - started > join_timeout:
                    raise BrokerTimeoutError(
                        f"consumer group {self.group!r} got no partitions within "
                        f"{join_timeout:g} s; is the broker reachable and the topic created?")
                continue
            if idle_timeout is not None and now - last_activity >= idle_timeout:
                return

    def mark_done(self, message: Message) -> None:
        """Marks a message finished; the next commit() may include it."""
        self._c.mark_done(message)

    def commit(self) -> list[tuple[str, int, int]]:
        """Commits, per partition, the offset after the contiguous done prefix. Returns
        (topic, partition, next offset) for what was committed."""
        return [tuple(t) for t in self._c.commit()]  # type: ignore[misc]

    def committed(self, partitions: Iterable[tuple[str, int]],
                  timeout: float = 10.0) -> list[tuple[str, int, int]]:
        """The group's committed offsets on the broker (-1001 = none yet)."""
        return [tuple(t) for t in self._c.committed(list(partitions), timeout)]  # type: ignore[misc]

    def seek(self, topic: str, partition: int, offset: int, *, timeout: float = 10.0) -> None:
        self._c.seek(topic, partition, offset, timeout)

    def assignment(self) -> list[tuple[str, int]]:
        return [tuple(t) for t in self._c.assignment()]  # type: ignore[misc]

    @property
    def outstanding(self) -> int:
        """Messages delivered but not yet marked done."""
        return int(self._c.outstanding)

    @property
    def closed(self) -> bool:
        return bool(self._c.closed)

    def close(self) -> None:
        """Commits what is done, leaves the group and releases the client."""
        if not self._c.closed:
            self._c.close()


__all__ = ["Broker", "Consumer", "Producer", "connect", "UsageError"]
