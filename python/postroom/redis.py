"""Redis Streams as a postroom broker (``redis://[:password@]host:port/db``).

Everything a ``kafka://`` broker offers works here with the same calls: a stream is a
topic with one partition (0), an entry id plays the offset's part (``Message.id``,
``Message.position``), and ``commit()`` acknowledges (XACK) what was marked done. How
messages and CloudEvents map onto entry fields, and how pending entries are recovered, is
described in docs/design/redis-streams.md.
"""

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
    parse,
)
from .broker import shown as _shown
from .errors import ConfigurationError, UsageError

_NOT_ON_REDIS = ("Redis Streams have no partitions or numeric offsets: a stream is partition 0 "
                 "and entries are named by id")


class RedisBroker(BrokerBase):
    """A Redis server holding streams, and the clients that talk to it.

    Thread-safety: may be shared between threads; producers may be too; a consumer belongs
    to its polling thread (mark_done() excepted).
    """

    def __init__(self, url: str | _core.BrokerUrl, *, client_id: str = "postroom",
                 timeout: float = 15.0, properties: Mapping[str, str] | None = None) -> None:
        parsed = url if isinstance(url, _core.BrokerUrl) else parse(url)
        if parsed.scheme != "redis":
            raise ConfigurationError(
                f"broker URL {_shown(parsed.text)}: expected redis://host:port/db")
        if properties:
            raise ConfigurationError(
                "a redis:// broker takes no client properties; pass maxlen= to producer() and "
                "consumer settings to consumer()")
        self.url = parsed.text
        self.client_id = client_id
        self.timeout = timeout
        self.properties = {}
        self._redis = _core.RedisAdmin(broker_url=self.url)

    @property
    def bootstrap_servers(self) -> str:
        raise UsageError("a redis:// broker has no Kafka bootstrap servers")

    def producer(self, *, idempotent: bool = True, acks: str = "all", compression: str = "none",
                 linger: float = 0.005, delivery_timeout: float = 30.0, close_timeout: float = 10.0,
                 properties: Mapping[str, str] | None = None,
                 maxlen: int | None = None) -> RedisProducer:
        """A producer adding entries with XADD; ``maxlen`` trims each stream approximately
        (MAXLEN ~) as it adds. Kafka's tuning arguments are accepted and ignored; librdkafka
        ``properties`` are refused."""
        if properties:
            raise ConfigurationError("a redis:// producer takes no librdkafka properties; "
                                     "its only setting is maxlen=")
        return RedisProducer(self, maxlen=maxlen, timeout=self.timeout)

    def consumer(self, group: str, topics: str | Iterable[str] | None = None, *,
                 offset_reset: Literal["earliest", "latest"] = "earliest",
                 session_timeout: float = 10.0, max_poll_interval: float = 300.0,
                 on_assigned: PartitionCallback | None = None,
                 on_revoked: PartitionCallback | None = None,
                 on_lost: PartitionCallback | None = None,
                 properties: Mapping[str, str] | None = None,
                 consumer_name: str | None = None, claim_min_idle: float = 30.0,
                 claim_interval: float = 5.0) -> RedisConsumer:
        """A member of consumer group ``group``. A new group starts at the first entry
        (``offset_reset="earliest"``, id 0) or at new entries only ("latest", id ``$``).
        ``consumer_name`` fixes the member's name, so a restarted process takes up its own
        pending entries at once; entries pending longer than ``claim_min_idle`` seconds in
        other members are claimed every ``claim_interval`` seconds."""
        if properties:
            raise ConfigurationError(
                "a redis:// consumer takes no librdkafka properties; use consumer_name=, "
                "claim_min_idle= and claim_interval=")
        consumer = RedisConsumer(self, group, consumer_name=consumer_name,
                                 start_id="0" if offset_reset == "earliest" else "$",
                                 claim_min_idle=claim_min_idle, claim_interval=claim_interval)
        if topics is not None:
            consumer.subscribe(topics, on_assigned=on_assigned)
        return consumer

    def create_topic(self, name: str, partitions: int = 1, *, replication_factor: int = 1,
                     config: Mapping[str, str] | None = None, exist_ok: bool = False) -> None:
        """Creates an empty stream. A stream is one partition: ``partitions``,
        ``replication_factor`` and ``config`` are accepted for Kafka code and ignored."""
        if not exist_ok and self._redis.exists(name):
            raise UsageError(f"stream {name!r} exists already; pass exist_ok=True to accept it")
        self._redis.create_stream(name)

    def delete_topic(self, name: str) -> None:
        self._redis.remove_stream(name)

    def topics(self) -> list[TopicInfo]:
        """Streams, sorted by name (one partition each)."""
        return list(self._redis.list_topics())

    def topic(self, name: str) -> TopicInfo | None:
        return next((t for t in self.topics() if t.name == name), None)

    def watermarks(self, topic: str, partition: int = 0) -> tuple[int, int]:
        raise UsageError(f"{_NOT_ON_REDIS}; use length() or range()")

    def ping(self) -> None:
        self._redis.ping()

    # -- what is Redis's own ---------------------------------------------------------------

    def length(self, stream: str) -> int:
        """Entries in the stream (XLEN)."""
        return int(self._redis.length(stream))

    def groups(self, stream: str) -> list[dict[str, Any]]:
        """Consumer groups of the stream: name, consumers, pending, lag (None when Redis
        cannot tell), last_delivered_id."""
        return list(self._redis.groups(stream))

    def pending(self, stream: str, group: str, count: int = 1000) -> list[dict[str, Any]]:
        """Entries delivered to the group and not yet acknowledged: id, consumer, idle_ms,
        deliveries."""
        return list(self._redis.pending(stream, group, count))

    def range(self, stream: str, start: str = "-", end: str = "+", *, count: int = 1000,
              reverse: bool = False) -> list[Message]:
        """Entries from id ``start`` to ``end`` ("-" and "+" are the ends), oldest first, or
        newest first with ``reverse``."""
        return list(self._redis.range(stream, start, end, count, reverse))

    def follow(self, stream: str, *, from_beginning: bool = False,
               idle_timeout: float | None = None, limit: int | None = None,
               poll_interval: float = 0.2) -> Iterator[Message]:
        """Yields the stream's entries as they are added, without a consumer group (nothing
        is recorded on the server): from the oldest with ``from_beginning``, else from the
        next new one. Stops after ``limit`` entries or ``idle_timeout`` quiet seconds."""
        if from_beginning:
            after = None
        else:
            newest = self.range(stream, count=1, reverse=True)
            after = newest[0].id if newest else "0-0"
        count = 0
        quiet_since = time.monotonic()
        while limit is None or count < limit:
            want = 500 if limit is None else min(500, limit - count)
            batch = self.range(stream, "-" if after is None else f"({after}", count=want)
            if batch:
                yield from batch
                count += len(batch)
                after = batch[-1].id
                quiet_since = time.monotonic()
                continue
            if idle_timeout is not None and time.monotonic() - quiet_since >= idle_timeout:
                return
            time.sleep(poll_interval)

    def delete_entries(self, stream: str, ids: Iterable[str]) -> int:
        """Deletes entries by id (XDEL); returns how many existed."""
        return int(self._redis.remove_entries(stream, list(ids)))

    def lag(self, group: str, topics: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Per stream (``topics``, default every stream) the group reads: the last entry id
        delivered to it, the entries not delivered yet (None when Redis cannot tell) and the
        pending ones (delivered, not acknowledged)."""
        names = list(topics) if topics is not None else [t.name for t in self.topics()]
        rows = []
        for stream in names:
            for g in self.groups(stream):
                if g["name"] == group:
                    rows.append({"topic": stream, "partition": 0,
                                 "committed": g["last_delivered_id"], "end": None,
                                 "lag": g["lag"], "pending": g["pending"]})
        return rows


class RedisProducer(ProducerBase):
    """Adds entries to streams. A batch goes out in one script call and every add is reported.

    XADD is not idempotent: when a connection drops before the reply, the add may or may not
    have happened, and a retry may add the entry twice; consumers dedupe on the event id.

    Thread-safety: methods may be called from several threads (calls are serialised).
    """

    def __init__(self, broker: RedisBroker, *, maxlen: int | None = None,
                 timeout: float = 15.0) -> None:
        if maxlen is not None and maxlen <= 0:
            raise ConfigurationError("maxlen must be positive, or None to keep every entry")
        self.broker = broker
        self._r = _core.RedisProducer(broker_url=broker.url, maxlen=maxlen, timeout=timeout)
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisProducer({self.broker.redacted_url!r}{', closed' if self._closed else ''})"

    def _check(self) -> None:
        if self._closed:
            raise UsageError("the producer is closed")

    def send(self, value: Event | Bytes | None, *, topic: str, key: Bytes | None = None,
             headers: HeaderPairs | None = None, partition: int | None = None,
             mode: EventMode = "binary", timeout: float | None = None) -> DeliveryReport:
        """Adds one entry; the report's ``id`` is the entry id."""
        self._check()
        return self._r.send(topic, value, key=key, headers=headers, partition=partition,
                            mode=mode)

    def produce(self, value: Event | Bytes | None, *, topic: str, key: Bytes | None = None,
                headers: HeaderPairs | None = None, partition: int | None = None,
                mode: EventMode = "binary",
                on_delivery: Callable[[DeliveryReport], Any] | None = None) -> None:
        """Adds one entry now (Redis answers at once); ``on_delivery`` gets its report."""
        report = self.send(value, topic=topic, key=key, headers=headers, partition=partition,
                           mode=mode)
        if on_delivery is not None:
            on_delivery(report)

    def send_batch(self, items: Iterable[Any], *, topic: str, key: Bytes | None = None,
                   mode: EventMode = "binary", wait: bool = True,
                   raise_on_error: bool = True) -> BatchResult:
        """Adds many entries, one script call per 1,000; items as for Kafka's send_batch.

        With ``wait=False`` the adds are sent and the call returns before Redis answers, so
        the next batch can be prepared meanwhile; ``wait(batch)`` or ``flush()`` reads the
        reports (batches are reported in the order they were sent)."""
        self._check()
        result = self._r.send_batch(topic, items, key=key, mode=mode, wait=wait)
        if wait and raise_on_error:
            result.raise_for_failures()
        return result

    def wait(self, batch: BatchResult, timeout: float | None = None) -> bool:
        """Reads the reports of a batch sent with ``wait=False`` (and of those sent before
        it); True when every report arrived. A lost connection reports the entries whose
        replies did not come as failed."""
        return bool(self._r.wait(batch))

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def flush(self, timeout: float | None = None) -> bool:
        """Reads the reports of every batch sent with ``wait=False``."""
        self._r.flush()
        return True

    @property
    def in_flight(self) -> int:
        """Entries sent with ``wait=False`` whose reports were not read yet."""
        return int(self._r.in_flight)

    @property
    def idempotence_enabled(self) -> bool:
        """False: Redis has no idempotent add (see the class docstring)."""
        return False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float | None = None) -> None:
        if not self._closed:
            self._closed = True
            self._r.close()


class RedisConsumer(ConsumerBase):
    """A member of a consumer group on streams: reads its own pending entries first, then
    entries claimed from members idle too long, then new ones; commit() acknowledges (XACK)
    what was marked done.

    Thread-safety: one thread polls; mark_done() may be called from any thread.
    """

    def __init__(self, broker: RedisBroker, group: str, *, consumer_name: str | None = None,
                 start_id: str = "0", claim_min_idle: float = 30.0,
                 claim_interval: float = 5.0) -> None:
        self.broker = broker
        self.group = group
        self._streams: list[str] = []
        self._r = _core.RedisConsumer(
            broker_url=broker.url, group=group, client_id=broker.client_id,
            consumer=consumer_name or "", start_id=start_id, claim_min_idle=claim_min_idle,
            claim_interval=claim_interval)
        self._closed = False

    def __repr__(self) -> str:
        return (f"RedisConsumer({self.broker.redacted_url!r}, group={self.group!r}, "
                f"name={self.consumer_name!r})")

    def __iter__(self) -> Iterator[Message]:
        while True:
            yield from self._r.poll_batch(500, None)

    @property
    def consumer_name(self) -> str:
        return str(self._r.consumer_name)

    def subscribe(self, topics: str | Iterable[str], *,
                  on_assigned: PartitionCallback | None = None,
                  on_revoked: PartitionCallback | None = None,
                  on_lost: PartitionCallback | None = None) -> None:
        """Joins the group on these streams (creating the streams and the group, from the
        start id, if needed). ``on_assigned`` is called at once; a stream is never revoked."""
        self._streams = [topics] if isinstance(topics, str) else list(topics)
        self._r.subscribe(self._streams)
        if on_assigned is not None:
            on_assigned([(s, 0) for s in self._streams])

    def assign(self, partitions: Iterable[tuple[str, int] | tuple[str, int, int]]) -> None:
        raise UsageError(f"{_NOT_ON_REDIS}; subscribe() to streams instead")

    def poll(self, timeout: float | None = None) -> Message | None:
        batch = self._r.poll_batch(1, timeout)
        return batch[0] if batch else None

    def poll_batch(self, max_messages: int = 500, timeout: float | None = None) -> list[Message]:
        return list(self._r.poll_batch(max_messages, timeout))

    def messages(self, *, idle_timeout: float | None = None, limit: int | None = None,
                 batch_size: int = 500, join_timeout: float = 60.0) -> Iterator[Message]:
        """Yields entries until none arrived for ``idle_timeout`` seconds or ``limit`` were
        yielded."""
        count = 0
        last_activity = time.monotonic()
        while limit is None or count < limit:
            want = batch_size if limit is None else min(batch_size, limit - count)
            batch = self._r.poll_batch(want, 0.1)
            now = time.monotonic()
            if batch:
                last_activity = now
                yield from batch
                count += len(batch)
            elif idle_timeout is not None and now - last_activity >= idle_timeout:
                return

    def mark_done(self, message: Message) -> None:
        self._r.mark_done(message)

    def commit(self) -> list[tuple[str, int, int]]:
        """Acknowledges (XACK) what was marked done. Returns one ``(stream, 0, count)``
        per call that acknowledged something, ``count`` being the entries acknowledged."""
        n = int(self._r.commit())
        return [("*", 0, n)] if n else []

    def committed(self, partitions: Iterable[tuple[str, int]],
                  timeout: float = 10.0) -> list[tuple[str, int, int]]:
        raise UsageError(f"{_NOT_ON_REDIS}; see broker.groups(stream) and broker.pending()")

    def seek(self, topic: str, partition: int, offset: int, *, timeout: float = 10.0) -> None:
        raise UsageError(f"{_NOT_ON_REDIS}; use redeliver_from(message)")

    def redeliver_from(self, message: Message) -> None:
        """Delivers ``message`` and the later unacknowledged entries of its stream again."""
        self._r.redeliver_from(message)

    def pause(self, streams: Iterable[str]) -> None:
        self._r.pause([(s, 0) for s in streams])

    def resume(self, streams: Iterable[str]) -> None:
        self._r.resume([(s, 0) for s in streams])

    def assignment(self) -> list[tuple[str, int]]:
        return [(s, 0) for s in self._streams]

    def lag(self) -> dict[tuple[str, int], int]:
        """Per stream: entries the group has not been given yet (-1 unknown)."""
        return {tuple(k): int(v) for k, v in self._r.lag.items()}  # type: ignore[misc]

    @property
    def counters(self) -> dict[str, int]:
        """claimed, deleted_while_pending, groups_recreated, reconnects, acked."""
        return {k: int(v) for k, v in self._r.counters.items()}

    @property
    def outstanding(self) -> int:
        raise UsageError("see broker.pending(stream, group) for delivered, unacknowledged entries")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Acknowledges what is done and lets go of the connection. The member stays in the
        group (Redis keeps its pending entries with it)."""
        if not self._closed:
            self._closed = True
            self._r.close()


__all__ = ["RedisBroker", "RedisConsumer", "RedisProducer"]
