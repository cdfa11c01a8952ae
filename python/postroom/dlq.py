"""Dead-letter tooling: read, understand, replay and settle dead letters — postroom's own and
those written by Spring Kafka, Kafka Connect, Kafka Streams, Watermill, MassTransit and
NServiceBus — on Kafka, Redis Streams and the embedded broker.

    letters = broker.dead_letters("orders.dlq")
    for group in letters.stats():          # by error fingerprint
        print(group.count, group.error_type, group.message)
    letters.replay(fingerprint=group.fingerprint, rate=100)   # back to the original topic

A letter's id is ``<topic>:<partition>:<offset>`` on Kafka and ``<stream>:<entry id>`` on
Redis. Replayed and resolved letters are recorded in the ledger ``<topic>.ledger`` and leave
the default views; a replay killed halfway resumes where it stopped when run again.
"""

from __future__ import annotations

import base64
import builtins
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import _core
from ._core import DeadLetter, DeadLetterGroup
from .errors import UsageError

if TYPE_CHECKING:
    from .broker import BrokerBase

Progress = Callable[[int, int], Any]
When = float | datetime | None


def _ms(when: When) -> int | None:
    if when is None:
        return None
    if isinstance(when, datetime):
        return int(when.timestamp() * 1000)
    return int(float(when) * 1000)


@dataclass(frozen=True)
class ReplayReport:
    """What a replay did (or, in a dry run, would do). ``replay_id`` is in every record it
    sent (``postroom-replay-id``); ``truncated`` counts letters left out because their value
    was cut to fit the dead-letter topic (the whole event is at their original offset)."""
    replay_id: str
    selected: int
    replayed: int
    parked: int
    skipped: int
    without_target: int
    truncated: int
    cancelled: bool
    per_target: dict[str, int] = field(default_factory=dict)
    per_fingerprint: dict[str, int] = field(default_factory=dict)


class DeadLetters:
    """The dead letters of one topic or stream.

    Filters, accepted by list(), stats(), replay() and export(): ``since`` / ``until``
    (epoch seconds or datetime, on the letter's timestamp), ``key``, ``header`` (a name, or
    ``"name=value"``), ``error_type`` (substring), ``original_topic``, ``fingerprint`` (a
    group, or its prefix), ``text`` (substring of the value), ``ids``.

    Thread-safety: one thread at a time.
    """

    def __init__(self, broker: BrokerBase, topic: str, *, timeout: float = 15.0) -> None:
        self.broker = broker
        self.topic = topic
        self._q = _core.DeadLetterQueue(broker_url=broker.url, topic=topic, timeout=timeout)

    def __repr__(self) -> str:
        return f"DeadLetters({self.broker.redacted_url!r}, {self.topic!r})"

    def __len__(self) -> int:
        """Records in the topic (settled ones included)."""
        return int(self._q.size())

    @staticmethod
    def _filter(since: When = None, until: When = None, key: str | bytes | None = None,
                header: str | None = None, error_type: str = "", original_topic: str = "",
                fingerprint: str = "", text: str = "") -> dict[str, Any]:
        name, value = "", None
        if header:
            name, _, rest = header.partition("=")
            value = rest if "=" in header else None
        return {"since_ms": _ms(since), "until_ms": _ms(until), "key": key,
                "header_name": name, "header_value": value, "error_type": error_type,
                "original_topic": original_topic, "fingerprint": fingerprint, "text": text}

    def list(self, *, limit: int = 50, skip: int = 0, newest_first: bool = True,
             include_settled: bool = False, ids: Iterable[str] = (),
             **filters: Any) -> builtins.list[DeadLetter]:
        """Matching letters, newest first by default; page with ``skip`` and ``limit``
        (``newest_first=False`` pages from the oldest)."""
        return builtins.list(self._q.find(limit=limit, skip=skip, newest_first=newest_first,
                                 include_settled=include_settled, ids=builtins.list(ids),
                                 **self._filter(**filters)))

    def show(self, letter_id: str) -> DeadLetter:
        letter = self._q.show(letter_id)
        if letter is None:
            raise UsageError(f"no dead letter {letter_id!r} in {self.topic!r}; ids look like "
                             f"{self.topic}:<partition>:<offset> (Kafka) or "
                             f"{self.topic}:<entry id> (Redis)")
        return letter

    def stats(self, *, include_settled: bool = False, progress: Progress | None = None,
              **filters: Any) -> builtins.list[DeadLetterGroup]:
        """Groups by error fingerprint (error type + message with numbers and ids
        normalised + top stack frame), largest first."""
        _total, groups = self._q.stats(include_settled=include_settled, progress=progress,
                                       **self._filter(**filters))
        return builtins.list(groups)

    def replay(self, *, to: str | None = None, rate: float = 0.0, batch_size: int = 500,
               dry_run: bool = False, again: bool = False, max_replays: int = 3,
               parking_topic: str | None = None, keep_failure_headers: bool = False,
               ids: Iterable[str] = (), progress: Progress | None = None,
               **filters: Any) -> ReplayReport:
        """Sends the selected letters back to their original topic (or ``to``): key, value
        and headers kept, except the failure headers of every decoded convention
        (postroom's, Spring's, Kafka Connect's, ...; ``keep_failure_headers=True`` keeps
        them); ``postroom-replay-count`` raised, ``postroom-replayed-from`` (the letter) and
        ``postroom-replay-id`` (this replay) added, so a second failure is traced to the
        first. At most ``rate`` letters per second (0: no limit). A letter replayed
        ``max_replays`` times goes to the parking lot (``<topic>.parking``) instead, failure
        headers kept. A letter whose value was cut to fit the dead-letter topic is left out.
        ``progress(done, total)`` may return False to cancel; Ctrl-C cancels too. Letters
        are recorded as replayed only once acknowledged, so running the same replay again
        continues where a killed one stopped."""
        report = self._q.replay(to=to or "", rate=rate, batch_size=batch_size,
                                dry_run=dry_run, again=again, max_replays=max_replays,
                                parking_topic=parking_topic or "",
                                keep_failure_headers=keep_failure_headers,
                                ids=builtins.list(ids),
                                progress=progress, **self._filter(**filters))
        return ReplayReport(**report)

    def ledger(self) -> dict[str, tuple[str, int, str]]:
        """Settled letters: id -> (state, at ms, detail)."""
        return dict(self._q.ledger())

    def purge(self, ids: Iterable[str], *, note: str = "") -> int:
        """Settles letters: on Redis the entries are deleted; on Kafka (records cannot be
        deleted one by one) they are marked resolved in the ledger and stop showing."""
        return int(self._q.resolve(builtins.list(ids), note))

    def truncate(self, partition: int, before_offset: int, *, confirm: bool = False) -> int:
        """Kafka: deletes every record of ``partition`` below ``before_offset``
        (DeleteRecords). Only with ``confirm=True``. Returns the new low watermark."""
        if not confirm:
            raise UsageError("truncation deletes records for good: pass confirm=True")
        return int(self._q.truncate(partition, before_offset))

    # -- export / import ----------------------------------------------------------------

    def export(self, path: str | Path | IO[str], *, include_settled: bool = True,
               ids: Iterable[str] = (), **filters: Any) -> int:
        """Writes the matching letters as JSON Lines, oldest first: key, value and header
        values base64-encoded (binary safe), plus where each letter was and what was
        decoded. Returns how many."""
        letters = self._q.find(limit=1 << 62, newest_first=False,
                               include_settled=include_settled, ids=builtins.list(ids),
                               **self._filter(**filters))
        lines = (json.dumps(_record_json(d)) + "\n" for d in letters)
        if isinstance(path, (str, Path)):
            with open(path, "w", encoding="utf-8") as out:
                out.writelines(lines)
        else:
            path.writelines(lines)
        return len(letters)

    def import_(self, path: str | Path, *, to: str | None = None) -> int:
        """Sends the letters of a JSON Lines export to ``to`` (default: this topic), key,
        value and headers byte for byte. Returns how many."""
        items = builtins.list(read_export(path))
        with self.broker.producer() as producer:
            for start in range(0, len(items), 1000):
                producer.send_batch(items[start:start + 1000], topic=to or self.topic)
        return len(items)


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def _record_json(d: DeadLetter) -> dict[str, Any]:
    r = d.record
    return {
        "id": d.id, "topic": r.topic, "partition": r.partition, "offset": r.offset,
        "entry_id": r.id or None, "timestamp_ms": r.timestamp_ms,
        "key": _b64(r.key), "value": _b64(r.value),
        "headers": [[name, _b64(value)] for name, value in r.headers],
        "decoded": {"convention": d.convention, "error_type": d.error_type,
                    "error_message": d.error_message, "original_topic": d.original_topic,
                    "original_partition": d.original_partition,
                    "original_offset": d.original_offset, "group": d.group,
                    "fingerprint": d.fingerprint, "replay_count": d.replay_count},
    }


def read_export(path: str | Path) -> Iterator[tuple[bytes | None, bytes | None,
                                                     list[tuple[str, bytes | None]]]]:
    """(key, value, headers) of each line of a JSON Lines export."""
    def raw(value: str | None) -> bytes | None:
        return None if value is None else base64.b64decode(value)

    with open(path, encoding="utf-8") as lines:
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                headers = [(str(h[0]), raw(h[1])) for h in item["headers"]]
                yield raw(item["key"]), raw(item["value"]), headers
            except (ValueError, KeyError, TypeError, IndexError) as e:
                raise UsageError(f"{path}:{n}: not a postroom dead-letter export line "
                                 f"({e}); export with `postroom dlq export`") from e


def lag(broker: BrokerBase, group: str,
        topics: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Per partition (Kafka) or stream (Redis): the group's committed position, the end of
    the log, lag and (Redis) pending entries. Same as ``broker.lag(group, topics)``."""
    return broker.lag(group, topics)


__all__ = ["DeadLetter", "DeadLetterGroup", "DeadLetters", "ReplayReport", "lag", "read_export"]
