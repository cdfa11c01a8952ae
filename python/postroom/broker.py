"""What every postroom broker offers, and ``connect()``: the one place that picks the broker
class from the URL's scheme.

``kafka.Broker`` (``kafka://`` and ``embedded://``) and ``redis.RedisBroker`` (``redis://``)
are siblings under ``BrokerBase``, which holds only what they truly share. Calls that exist on
one transport only (``watermarks()`` and ``bootstrap_servers`` on Kafka; ``length()``,
``groups()``, ``pending()``, ``range()``, ``follow()`` on Redis) live on that broker alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Union

from . import _core
from ._core import TopicInfo
from .dlq import DeadLetters

if TYPE_CHECKING:
    from .kafka import Consumer, Producer

Bytes = Union[bytes, bytearray, memoryview, str]
HeaderPairs = Union[Mapping[str, Union[Bytes, None]], Sequence[tuple[str, Union[Bytes, None]]]]
PartitionCallback = Callable[[list[tuple[str, int]]], None]
EventMode = Literal["binary", "structured"]


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
    # Imported here: each broker module imports this one for BrokerBase.
    if isinstance(url, str) and url.startswith("redis://"):
        from .redis import RedisBroker

        return RedisBroker(url, client_id=client_id, timeout=timeout, properties=properties)
    from .kafka import Broker

    return Broker(url, client_id=client_id, timeout=timeout, properties=properties)


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
                 properties: Mapping[str, str] | None = None) -> Producer:
        """A producer. Use it as a context manager."""

    @abstractmethod
    def consumer(self, group: str, topics: str | Iterable[str] | None = None, *,
                 offset_reset: Literal["earliest", "latest"] = "earliest",
                 session_timeout: float = 10.0, max_poll_interval: float = 300.0,
                 on_assigned: PartitionCallback | None = None,
                 on_revoked: PartitionCallback | None = None,
                 on_lost: PartitionCallback | None = None,
                 properties: Mapping[str, str] | None = None) -> Consumer:
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


__all__ = ["BrokerBase", "Bytes", "EventMode", "HeaderPairs", "PartitionCallback", "connect"]
