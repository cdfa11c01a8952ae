"""What every postroom transport offers, and ``connect()``: the one place that picks the
broker class from the URL's scheme.

``kafka.Broker`` (``kafka://`` and ``embedded://``) and ``redis.RedisBroker`` (``redis://``)
are siblings under ``BrokerBase``, their producers under ``ProducerBase`` and their consumers
under ``ConsumerBase``; each base holds only what both truly share. Calls that exist on one
transport only (``watermarks()``, ``bootstrap_servers``, ``assign()``, ``seek()``,
``committed()`` on Kafka; ``length()``, ``groups()``, ``pending()``, ``range()``, ``follow()``,
``redeliver_from()`` on Redis) live on that transport's classes. The Redis classes keep a few
of Kafka's names only to raise a UsageError that explains the Redis way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar, Union

from . import _core
from ._core import BatchResult, DeliveryReport, Event, Message, TopicInfo
from .dlq import DeadLetters
from .errors import ConfigurationError

Bytes = Union[bytes, bytearray, memoryview, str]
HeaderPairs = Union[Mapping[str, Union[Bytes, None]], Sequence[tuple[str, Union[Bytes, None]]]]
PartitionCallback = Callable[[list[tuple[str, int]]], None]
EventMode = Literal["binary", "structured"]
_Client = TypeVar("_Client", bound="_Closing")


def shown(url: object) -> str:
    """``url`` for a message: quoted, its password replaced by ``***``."""
    return repr(_core.redacted_url(url)) if isinstance(url, str) else repr(url)


def connect(url: str = "embedded://", *, client_id: str = "postroom", timeout: float = 15.0,
            properties: Mapping[str, str] | None = None) -> BrokerBase:
    """Returns a handle on the broker named by ``url``.

    ``kafka://host:port[,host:port]`` names a Kafka cluster; ``embedded://`` (or
    ``embedded://NAME``) the in-process development broker; ``redis://host:port/db`` a Redis
    server's streams (a RedisBroker). Nothing connects until the first call that needs the
    broker.
    """
    parsed = parse(url)
    return _transport(parsed.scheme)(parsed, client_id=client_id, timeout=timeout,
                                     properties=properties)


def parse(url: object) -> _core.BrokerUrl:
    """``url`` parsed and checked (no connection); ConfigurationError says what is accepted."""
    if not isinstance(url, str):
        raise ConfigurationError(f"broker URL {shown(url)}: expected kafka://host:port[,host:port"
                                 "...], redis://host:port/db or embedded://[name]")
    return _core.parse_broker_url(url)


def _transport(scheme: str) -> Callable[..., BrokerBase]:
    """The broker class that serves ``scheme``: the one place that chooses by it."""
    # Imported here: each broker module imports this one for BrokerBase.
    if scheme == "redis":
        from .redis import RedisBroker

        return RedisBroker
    from .kafka import Broker

    return Broker


class _Closing(ABC):
    """A client: a context manager that closes it."""

    @abstractmethod
    def close(self) -> None:
        """Releases the client."""

    def __enter__(self: _Client) -> _Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class ProducerBase(_Closing):
    """What every producer offers (``kafka.Producer``, ``redis.RedisProducer``)."""

    broker: BrokerBase

    @abstractmethod
    def send(self, value: Event | Bytes | None, *, topic: str, key: Bytes | None = None,
             headers: HeaderPairs | None = None, partition: int | None = None,
             mode: EventMode = "binary", timeout: float | None = None) -> DeliveryReport:
        """Sends one message (or Event) and waits for the broker's acknowledgement."""

    @abstractmethod
    def produce(self, value: Event | Bytes | None, *, topic: str, key: Bytes | None = None,
                headers: HeaderPairs | None = None, partition: int | None = None,
                mode: EventMode = "binary",
                on_delivery: Callable[[DeliveryReport], Any] | None = None) -> None:
        """Queues one message; ``on_delivery`` gets its report."""

    @abstractmethod
    def send_batch(self, items: Iterable[Any], *, topic: str, key: Bytes | None = None,
                   mode: EventMode = "binary", wait: bool = True,
                   raise_on_error: bool = True) -> BatchResult:
        """Sends many messages in one call into the core."""

    @abstractmethod
    def wait(self, batch: BatchResult, timeout: float | None = None) -> bool:
        """Waits for a batch sent with ``wait=False``; True when every report arrived."""

    @abstractmethod
    def poll(self, timeout: float = 0.0) -> int:
        """Serves delivery reports; returns how many were served."""

    @abstractmethod
    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every queued message is reported; True if none is left."""

    @property
    @abstractmethod
    def in_flight(self) -> int:
        """Messages sent whose reports did not arrive yet."""

    @property
    @abstractmethod
    def idempotence_enabled(self) -> bool:
        """True when a retry can never add a message twice."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """True once close() was called."""

    @abstractmethod
    def close(self, timeout: float | None = None) -> None:
        """Reports what is still in flight, then releases the client."""


class ConsumerBase(_Closing):
    """What every consumer offers (``kafka.Consumer``, ``redis.RedisConsumer``): a member
    of consumer group ``group`` that commits only what was marked done."""

    broker: BrokerBase
    group: str

    @abstractmethod
    def __iter__(self) -> Iterator[Message]:
        """Messages, forever."""

    @abstractmethod
    def subscribe(self, topics: str | Iterable[str], *,
                  on_assigned: PartitionCallback | None = None,
                  on_revoked: PartitionCallback | None = None,
                  on_lost: PartitionCallback | None = None) -> None:
        """Joins the group on ``topics``."""

    @abstractmethod
    def poll(self, timeout: float | None = None) -> Message | None:
        """The next message, or None after ``timeout`` seconds (None waits forever)."""

    @abstractmethod
    def poll_batch(self, max_messages: int = 500, timeout: float | None = None) -> list[Message]:
        """Up to ``max_messages`` at once, in one call into the core."""

    @abstractmethod
    def messages(self, *, idle_timeout: float | None = None, limit: int | None = None,
                 batch_size: int = 500, join_timeout: float = 60.0) -> Iterator[Message]:
        """Yields messages until none arrived for ``idle_timeout`` seconds or ``limit``
        messages were yielded."""

    @abstractmethod
    def mark_done(self, message: Message) -> None:
        """Marks a message finished; the next commit() may include it."""

    @abstractmethod
    def commit(self) -> list[tuple[str, int, int]]:
        """Commits (acknowledges) what was marked done."""

    @abstractmethod
    def assignment(self) -> list[tuple[str, int]]:
        """The (topic, partition) pairs this member reads."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """True once close() was called."""


class BrokerBase(ABC):
    """A broker and the clients that talk to it: what every transport offers.

    Thread-safety: a broker may be shared between threads; each producer and consumer it
    creates states its own rules.
    """

    url: str
    client_id: str
    timeout: float
    properties: dict[str, str]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.redacted_url!r})"

    @property
    def redacted_url(self) -> str:
        """The URL with its password replaced by ``***``: what postroom shows in reprs, errors,
        logs and command-line output. ``url`` is the URL as given, for connecting."""
        return _core.redacted_url(self.url)

    @property
    def is_embedded(self) -> bool:
        """True for the in-process development broker (``embedded://``)."""
        return False

    # -- clients ---------------------------------------------------------------------------

    @abstractmethod
    def producer(self, *, idempotent: bool = True, acks: str = "all", compression: str = "none",
                 linger: float = 0.005, delivery_timeout: float = 30.0, close_timeout: float = 10.0,
                 properties: Mapping[str, str] | None = None) -> ProducerBase:
        """A producer. Use it as a context manager."""

    @abstractmethod
    def consumer(self, group: str, topics: str | Iterable[str] | None = None, *,
                 offset_reset: Literal["earliest", "latest"] = "earliest",
                 session_timeout: float = 10.0, max_poll_interval: float = 300.0,
                 on_assigned: PartitionCallback | None = None,
                 on_revoked: PartitionCallback | None = None,
                 on_lost: PartitionCallback | None = None,
                 properties: Mapping[str, str] | None = None) -> ConsumerBase:
        """A consumer in consumer group ``group``, subscribed to ``topics`` if given."""

    # -- topics ----------------------------------------------------------------------------

    @abstractmethod
    def create_topic(self, name: str, partitions: int = 3, *, replication_factor: int = 1,
                     config: Mapping[str, str] | None = None, exist_ok: bool = False) -> None:
        """Creates a topic (a stream on Redis)."""

    @abstractmethod
    def delete_topic(self, name: str) -> None:
        """Deletes a topic and all its messages."""

    @abstractmethod
    def topics(self) -> list[TopicInfo]:
        """User topics, sorted by name."""

    @abstractmethod
    def topic(self, name: str) -> TopicInfo | None:
        """The topic named ``name``, or None."""

    @abstractmethod
    def ping(self) -> None:
        """Round trip to the broker; raises BrokerTimeoutError if it does not answer."""

    # -- dead letters and lag --------------------------------------------------------------

    def dead_letters(self, topic: str, *, timeout: float | None = None) -> DeadLetters:
        """The dead letters of ``topic`` (e.g. ``orders.dlq``): list, stats, replay, purge,
        export and import."""
        return DeadLetters(self, topic, timeout=self.timeout if timeout is None else timeout)

    @abstractmethod
    def lag(self, group: str, topics: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Consumer-group lag per partition (Kafka) or stream (Redis): the group's committed
        position, the end of the log, lag and (Redis) pending entries."""


__all__ = ["BrokerBase", "Bytes", "ConsumerBase", "EventMode", "HeaderPairs", "PartitionCallback",
           "ProducerBase", "connect"]
