"""The idempotent consumer runtime: ``postroom.Processor`` and ``postroom.RetryPolicy``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from . import _core
from ._core import BatchContext, Event, HandlerContext, Message
from ._signals import stop_on_signals
from .broker import BrokerBase, connect
from .stores import IdempotencyStore, MemoryStore

Handler = Callable[[Event, HandlerContext], Any]
BatchHandler = Callable[[list[Event], BatchContext], Any]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: the delay before retry *n* (n = 1, 2, ...) is
    ``initial_delay * multiplier**(n-1)``, capped at ``max_delay``, varied by ±``jitter``.
    ``max_attempts`` counts every call of the handler, the first included.

    Exceptions that are instances of ``non_retryable`` (and
    ``postroom.errors.NonRetryableError``) skip the retries and go to the dead-letter
    topic at once.
    """

    max_attempts: int = 5
    initial_delay: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.2
    non_retryable: tuple[type[BaseException], ...] = ()


@dataclass(frozen=True)
class FloodGuard:
    """Keeps a downstream outage from dead-lettering everything: once more than
    ``max_failure_ratio`` of the last ``window`` events (at least ``min_events``) failed for
    good, the next failing event is held — the processor pauses ``pause`` seconds and retries
    it — instead of being dead-lettered. ``max_failure_ratio=0`` turns it off."""

    max_failure_ratio: float = 0.5
    window: int = 20
    min_events: int = 10
    pause: float = 10.0


@dataclass(frozen=True)
class ProcessorCounters:
    processed: int = 0
    duplicates: int = 0
    retried: int = 0
    failed_attempts: int = 0
    dead_lettered: int = 0
    retry_topic_sends: int = 0
    in_flight: int = 0
    blocked_waits: int = 0
    flood_pauses: int = 0
    purged_marks: int = 0
    lane_pauses: int = 0
    lag: dict[tuple[str, int], int] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        """Deliveries done: applied, skipped as duplicates, dead-lettered, or passed on to a
        retry topic (from where the event is delivered again)."""
        return self.processed + self.duplicates + self.dead_lettered + self.retry_topic_sends


class Processor:
    """Runs ``handler(event, context)`` for each event of ``topics`` in consumer group
    ``group`` (default: ``name``), with at-least-once delivery and exactly-once effects.

    - Dedupe: the idempotency key (the CloudEvent id, or ``key_header``, or ``key(event,
      message)``) is claimed in ``store`` (scope = ``name``) in the same transaction as the
      handler's SQL writes (``context.execute(...)`` with a SQL store).
    - Retries: failures are retried in process per ``retry``; then the event goes to
      ``dead_letter_topic`` (default ``<topic>.dlq``) with the ``postroom-dlt-*`` headers.
      Undecodable, non-CloudEvent or oversized input goes there at once.
    - ``retry_topics`` (delays in seconds, e.g. ``[10, 60, 600]``): non-blocking retries.
      After the in-process attempts, a failed event goes to ``<topic>.retry.1`` to be tried
      again 10 s later, then ``.retry.2`` after 60 s, ...; after the last, to the dead-letter
      topic. Its partition keeps flowing meanwhile (per-key order is given up for such
      events). The retry topics must exist; the processor consumes them too.
    - Offsets are committed only for finished events. SIGINT/SIGTERM stop ``run()``
      cleanly: the event in progress is not committed and comes back on restart.
    - With the Redis store, a batch's commit is sent and its outcome read in the next
      ``run_once`` (or ``close()``), after that call's poll: the events finish then.

    - ``retention`` (seconds, 0 = keep): dedupe marks older than this are purged at start and
      every ``purge_interval``; it is the replay horizon — an event redelivered after its
      mark is gone is applied again.
    - ``flood_guard`` (off unless given): when most recent events fail for good, pause and
      retry instead of dead-lettering everything.

    - ``batch_handler(events, context)`` instead of ``handler``: one call with the fresh
      events of a polled batch (duplicates left out), in order, in the batch's store
      transaction, so an effect can be written once per batch (a bulk INSERT, one INCRBY);
      ``context.messages`` are the events' messages. If it raises, nothing of the batch
      commits and its events are handled one at a time (each a list of one) with the retry
      policy and the dead-letter topic; that failed call does not count against the events'
      attempts.

    Events are handled in arrival order, a polled batch in one store transaction with a
    savepoint per event, so per-key order holds. With ``concurrency=N`` (N > 1), N threads
    each handle a share of the partitions (in order within each), so a slow or retrying
    partition does not hold up the others; the handler must then be thread-safe, and it runs
    with the GIL, so this helps handlers that wait (I/O), not CPU-bound ones.
    """

    def __init__(self, broker: BrokerBase | str, *, name: str, topics: str | Iterable[str],
                 handler: Handler | None = None, batch_handler: BatchHandler | None = None,
                 group: str | None = None,
                 store: IdempotencyStore | None = None, retry: RetryPolicy | None = None,
                 dead_letter_topic: str | None = None, key_header: str | None = None,
                 key: Callable[[Event, Message], str] | None = None,
                 max_payload_bytes: int = 1 << 20, batch_size: int = 500, concurrency: int = 1,
                 commit_interval: float = 1.0, blocked_backoff_max: float = 30.0,
                 flood_guard: FloodGuard | None = None, retention: float = 0.0,
                 purge_interval: float = 600.0, retry_topics: Iterable[float] = (),
                 consumer_properties: Mapping[str, str] | None = None,
                 producer_properties: Mapping[str, str] | None = None) -> None:
        call: Callable[..., Any]
        if handler is not None and batch_handler is None:
            call, batch = handler, False
        elif batch_handler is not None and handler is None:
            call, batch = batch_handler, True
        else:
            from .errors import UsageError

            raise UsageError("give a Processor either handler= (one event per call) or "
                             "batch_handler= (a batch per call)")
        if isinstance(broker, str):
            broker = connect(broker)
        self.broker = broker
        self.name = name
        self.retry = retry or RetryPolicy()
        self.store = store if store is not None else MemoryStore()
        names = [topics] if isinstance(topics, str) else list(topics)
        guard = flood_guard or FloodGuard(max_failure_ratio=0.0)
        self._p = _core.Processor(
            name=name, broker_url=broker.url, group_id=group or "", topics=names,
            handler=call, batch=batch, store=self.store, dead_letter_topic=dead_letter_topic or "",
            max_attempts=self.retry.max_attempts, initial_delay=self.retry.initial_delay,
            multiplier=self.retry.multiplier, max_delay=self.retry.max_delay,
            jitter=self.retry.jitter, non_retryable=tuple(self.retry.non_retryable),
            max_payload_bytes=max_payload_bytes, key_header=key_header or "",
            key_function=key, batch_size=batch_size, concurrency=concurrency,
            commit_interval=commit_interval,
            blocked_backoff_max=blocked_backoff_max,
            flood_max_failure_ratio=guard.max_failure_ratio, flood_window=guard.window,
            flood_min_events=guard.min_events, flood_pause=guard.pause,
            retention=retention, purge_interval=purge_interval,
            retry_topic_delays=[float(d) for d in retry_topics],
            consumer_properties={**broker.properties, **(consumer_properties or {})},
            producer_properties={**broker.properties, **(producer_properties or {})})

    def __repr__(self) -> str:
        return (f"Processor({self.name!r}, broker={self.broker.redacted_url!r}, "
                f"dead_letter_topic={self.dead_letter_topic!r})")

    def __enter__(self) -> Processor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def dead_letter_topic(self) -> str:
        return str(self._p.dead_letter_topic)

    @property
    def group(self) -> str:
        return str(self._p.group_id)

    @property
    def counters(self) -> ProcessorCounters:
        return ProcessorCounters(**self._p.counters())

    @property
    def stopping(self) -> bool:
        return bool(self._p.stopping)

    def run_once(self, timeout: float = 0.1) -> int:
        """Polls once and handles what arrived; returns how many events finished (with the
        Redis store, this includes the previous batch, whose commit it confirms)."""
        return int(self._p.run_once(timeout))

    def run(self, *, max_events: int | None = None, idle_timeout: float | None = None,
            handle_signals: bool = True) -> ProcessorCounters:
        """Runs until stop(), SIGINT or SIGTERM, or — if given — until ``max_events``
        events finished or none arrived for ``idle_timeout`` seconds (counted once the
        group assigned partitions). Returns the counters."""
        with stop_on_signals(self.stop, handle_signals):
            finished = 0
            last_activity: float | None = None
            while not self._p.stopping:
                n = self.run_once(0.1)
                finished += n
                now = time.monotonic()
                # Events whose commit is still in the background (Redis) are activity too.
                if n or self._p.counters()["in_flight"]:
                    last_activity = now
                elif last_activity is None and self._p.counters()["lag"]:
                    last_activity = now  # partitions assigned: the idle clock starts
                if max_events is not None and finished >= max_events:
                    break
                if (idle_timeout is not None and last_activity is not None
                        and now - last_activity >= idle_timeout):
                    break
            # A failure that stopped the processor on one of its lane threads.
            self._p.throw_if_failed()
        return self.counters

    def stop(self) -> None:
        """Asks run() to stop; safe from any thread and from signal handlers."""
        self._p.stop()

    def close(self) -> None:
        """Commits what is finished and leaves the group."""
        self._p.close()


__all__ = ["BatchHandler", "FloodGuard", "Handler", "Processor", "ProcessorCounters",
           "RetryPolicy"]
