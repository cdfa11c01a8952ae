"""The postroom command line: ``postroom --help``.

Every command takes ``--broker URL`` (default: $POSTROOM_BROKER or embedded://); every read
command takes ``--json``. Exit code 0 only on success; errors say what to do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from functools import wraps
from typing import IO, Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__, connect
from ._core import (
    DeadLetter,
    Event,
    Message,
    redact_secrets,
    redacted_url,
    set_default_log_level,
)
from .errors import PostroomError
from .redis import RedisBroker

F = TypeVar("F", bound=Callable[..., Any])

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

broker_option = click.option(
    "--broker", "broker_url", envvar="POSTROOM_BROKER", default="embedded://", show_default=True,
    help="Broker URL: kafka://host:port[,host:port], redis://host:port/db, embedded://[name].")
# On subcommands of a group that has --broker already: either place works.
sub_broker_option = click.option("--broker", "sub_broker", default=None,
                                 help="Broker URL (as on the group).")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


def reports_errors(fn: F) -> F:
    """Turns postroom errors into a one-line message and exit code 1. The message never
    shows a password of the command's URLs (the core redacts them already; this is the
    second lock)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PostroomError as e:
            message = str(e)
            for value in (*args, *kwargs.values()):
                if isinstance(value, str) and "://" in value:
                    message = redact_secrets(message, value)
            err.print(f"[bold red]error:[/] {escape(message)}")
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="postroom")
def main() -> None:
    """postroom: idempotent consume, transactional outbox and dead-letter tooling."""
    # Failures reach the user as one clear error each; librdkafka's own connection chatter
    # only when asked for (POSTROOM_LOG_LEVEL=warning).
    if "POSTROOM_LOG_LEVEL" not in os.environ:
        set_default_log_level(2)


# -- demo ---------------------------------------------------------------------------------

@main.command()
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


# -- topics -------------------------------------------------------------------------------

@main.group(invoke_without_command=True)
@broker_option
@json_option
@click.pass_context
@reports_errors
def topics(ctx: click.Context, broker_url: str, as_json: bool) -> None:
    """List topics (or create / delete one)."""
    ctx.obj = broker_url
    if ctx.invoked_subcommand is not None:
        return
    broker = connect(broker_url)
    infos = broker.topics()
    if as_json:
        emit_json([{"name": t.name, "partitions": t.partitions,
                    "replication_factor": t.replication_factor} for t in infos])
        return
    table = Table(title=f"topics on {redacted_url(broker_url)}")
    table.add_column("name")
    table.add_column("partitions", justify="right")
    table.add_column("replication", justify="right")
    for t in infos:
        table.add_row(t.name, str(t.partitions), str(t.replication_factor))
    out.print(table)


@topics.command("create")
@click.argument("name")
@click.option("--partitions", default=3, show_default=True)
@click.option("--replication-factor", default=1, show_default=True)
@click.option("--exist-ok", is_flag=True, help="Succeed if the topic already exists.")
@sub_broker_option
@click.pass_obj
@reports_errors
def topics_create(broker_url: str, name: str, partitions: int, replication_factor: int,
                  exist_ok: bool, sub_broker: str | None) -> None:
    """Create a topic."""
    connect(sub_broker or broker_url).create_topic(
        name, partitions, replication_factor=replication_factor, exist_ok=exist_ok)
    out.print(f"created topic {name} ({partitions} partitions)")


@topics.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@sub_broker_option
@click.pass_obj
@reports_errors
def topics_delete(broker_url: str, name: str, yes: bool, sub_broker: str | None) -> None:
    """Delete a topic and all its messages."""
    broker_url = sub_broker or broker_url
    if not yes:
        click.confirm(f"Delete topic {name} and all its messages on {redacted_url(broker_url)}?",
                      abort=True)
    connect(broker_url).delete_topic(name)
    out.print(f"deleted topic {name}")


# -- tail ---------------------------------------------------------------------------------

@main.command()
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
                "key": _text(message.key), "value": _text(message.value),
                "headers": {k: _text(v) for k, v in message.headers},
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
        start = -2 if from_beginning else -1
        with broker.consumer(f"postroom-tail-{int(time.time() * 1000)}") as consumer:
            consumer.assign([(topic, p, start) for p in range(info.partitions)])
            show(consumer.messages(idle_timeout=idle_timeout, limit=limit))
    except KeyboardInterrupt:
        pass


def _committed_text(committed: list[tuple[str, int, int]]) -> str:
    if not committed:
        return "committed nothing new"
    if committed[0][0] == "*":  # Redis Streams: entries acknowledged
        return f"acknowledged {sum(n for _, _, n in committed)} entries"
    return "committed " + ", ".join(f"{t}[{p}]@{o}" for t, p, o in committed)


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return "0x" + value.hex()


# -- dead letters -------------------------------------------------------------------------

def _when(value: str | None) -> float | None:
    """Epoch seconds, an ISO 8601 time, or an age like 30m, 2h, 7d (that long ago)."""
    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if value[-1:] in units and value[:-1].replace(".", "", 1).isdigit():
            return time.time() - float(value[:-1]) * units[value[-1]]
        if value.replace(".", "", 1).isdigit():
            return float(value)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise click.BadParameter(f"{value!r}: give epoch seconds, an ISO 8601 time or an age "
                                 "like 30m, 2h or 7d") from None


def filter_options(fn: F) -> F:
    """The filters shared by dlq list, stats, replay and export."""
    for option in reversed([
        click.option("--since", help="Letters from this time on (ISO 8601, epoch s, or 2h)."),
        click.option("--until", help="Letters before this time."),
        click.option("--key", help="Only this record key."),
        click.option("--header", help="A header that must be present: NAME or NAME=VALUE."),
        click.option("--error-type", default="", help="Substring of the error type."),
        click.option("--original-topic", default="", help="Where the letters came from."),
        click.option("--group", "fingerprint", default="",
                     help="An error group (its fingerprint, as `dlq stats` shows it)."),
        click.option("--text", default="", help="Substring of the value."),
    ]):
        fn = option(fn)
    return fn


def _filters(since: str | None, until: str | None, key: str | None, header: str | None,
             error_type: str, original_topic: str, fingerprint: str,
             text: str) -> dict[str, Any]:
    return {"since": _when(since), "until": _when(until), "key": key, "header": header,
            "error_type": error_type, "original_topic": original_topic,
            "fingerprint": fingerprint, "text": text}


def _time(ms: int) -> str:
    if ms < 0:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _letter_json(d: DeadLetter, full: bool = False) -> dict[str, Any]:
    r = d.record
    item: dict[str, Any] = {
        "id": d.id, "timestamp_ms": r.timestamp_ms, "convention": d.convention,
        "error_type": d.error_type, "error_message": d.error_message,
        "original_topic": d.original_topic, "original_partition": d.original_partition,
        "original_offset": d.original_offset, "group": d.group, "attempts": d.attempts,
        "failed_at": d.failed_at, "replay_count": d.replay_count,
        "replayed_from": d.replayed_from, "replay_id": d.replay_id,
        "value_truncated": d.value_truncated, "value_length": d.value_length,
        "fingerprint": d.fingerprint, "key": _text(r.key),
    }
    if full:
        item.update({"reason": d.reason, "error_stack": d.error_stack, "value": _text(r.value),
                     "headers": [[k, _text(v)] for k, v in r.headers]})
    return item


def _progress_bar(what: str) -> tuple[Progress, Callable[[int, int], bool]]:
    bar = Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=err, transient=True)
    task = bar.add_task(what, total=None)

    def update(done: int, total: int) -> bool:
        bar.update(task, completed=done, total=total)
        return True

    return bar, update


@main.group()
def dlq() -> None:
    """Dead letters: list, show, stats, replay, purge, export, import."""


@dlq.command("list")
@click.argument("topic")
@broker_option
@filter_options
@click.option("--id", "ids", multiple=True, help="Only these letters (repeatable).")
@click.option("--limit", default=50, show_default=True)
@click.option("--page", default=1, show_default=True, help="Page number (of --limit letters).")
@click.option("--oldest-first", is_flag=True, help="Page from the oldest letter.")
@click.option("--all", "include_settled", is_flag=True,
              help="Include letters already replayed or resolved.")
@json_option
@reports_errors
def dlq_list(topic: str, broker_url: str, ids: tuple[str, ...], limit: int, page: int,
             oldest_first: bool, include_settled: bool, as_json: bool, **filters: Any) -> None:
    """List the dead letters of TOPIC, newest first."""
    if page < 1 or limit < 1:
        raise click.BadParameter("--page and --limit start at 1")
    letters = connect(broker_url).dead_letters(topic).list(
        limit=limit, skip=(page - 1) * limit, newest_first=not oldest_first,
        include_settled=include_settled, ids=ids, **_filters(**filters))
    if as_json:
        emit_json([_letter_json(d) for d in letters])
        return
    table = Table(title=f"dead letters in {topic} (page {page})")
    for column in ("id", "time (UTC)", "error", "message", "from", "replays"):
        table.add_column(column, overflow="fold")
    for d in letters:
        table.add_row(d.id, _time(d.record.timestamp_ms), d.error_type or d.convention,
                      (d.error_message or "")[:80], d.original_topic, str(d.replay_count))
    out.print(table)
    if not letters:
        out.print("no dead letters match" + ("" if include_settled else
                                             " (add --all to include settled ones)"))


@dlq.command("show")
@click.argument("topic")
@click.argument("letter_id")
@broker_option
@json_option
@reports_errors
def dlq_show(topic: str, letter_id: str, broker_url: str, as_json: bool) -> None:
    """Show one dead letter: why and where it failed, its headers and value."""
    d = connect(broker_url).dead_letters(topic).show(letter_id)
    item = _letter_json(d, full=True)
    if as_json:
        emit_json(item)
        return
    table = Table(show_header=False, title=d.id)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for k, v in item.items():
        if k not in ("headers", "error_stack", "value") and v not in (None, ""):
            table.add_row(k, str(v))
    out.print(table)
    headers = Table(title="headers")
    headers.add_column("name")
    headers.add_column("value", overflow="fold")
    for k, v in item["headers"]:
        headers.add_row(k, "" if v is None else str(v)[:300])
    out.print(headers)
    if d.error_stack:
        out.print("[bold]stack[/]\n" + d.error_stack)
    out.print("[bold]value[/]\n" + str(item["value"]))


@dlq.command("stats")
@click.argument("topic")
@broker_option
@filter_options
@click.option("--all", "include_settled", is_flag=True,
              help="Include letters already replayed or resolved.")
@json_option
@reports_errors
def dlq_stats(topic: str, broker_url: str, include_settled: bool, as_json: bool,
              **filters: Any) -> None:
    """Group the dead letters of TOPIC by error fingerprint."""
    letters = connect(broker_url).dead_letters(topic)
    bar, update = _progress_bar("reading dead letters")
    with bar:
        groups = letters.stats(include_settled=include_settled, progress=update,
                               **_filters(**filters))
    rows: list[dict[str, Any]] = [
            {"fingerprint": g.fingerprint, "count": g.count, "error_type": g.error_type,
             "message": g.message, "top_frame": g.top_frame,
             "first_seen": _time(g.first_seen_ms), "last_seen": _time(g.last_seen_ms),
             "original_topics": sorted(g.original_topics), "groups": sorted(g.groups),
             "conventions": g.conventions, "sample_id": g.sample_id} for g in groups]
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"dead letters in {topic} by error ({sum(g.count for g in groups):,})")
    for column in ("group", "count", "error", "message", "first seen", "last seen", "from"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["fingerprint"], f"{r['count']:,}", r["error_type"], r["message"][:80],
                      r["first_seen"], r["last_seen"], ", ".join(r["original_topics"]))
    out.print(table)


@dlq.command("replay")
@click.argument("topic")
@broker_option
@filter_options
@click.option("--id", "ids", multiple=True, help="Only these letters (repeatable).")
@click.option("--to", default=None, help="Destination topic (default: each letter's original).")
@click.option("--rate", default=0.0, show_default=True, help="Letters per second (0: no limit).")
@click.option("--dry-run", is_flag=True, help="Show what would go where; send nothing.")
@click.option("--again", is_flag=True, help="Also letters replayed before.")
@click.option("--max-replays", default=3, show_default=True,
              help="Loop guard: letters replayed this often go to the parking lot.")
@click.option("--parking-topic", default=None, help="Default: TOPIC.parking.")
@click.option("--keep-failure-headers", is_flag=True,
              help="Keep the letters' failure headers (postroom-dlt-*, kafka_dlt-*, "
                   "__connect.errors.*, ...) in the replayed records.")
@json_option
@reports_errors
def dlq_replay(topic: str, broker_url: str, ids: tuple[str, ...], to: str | None, rate: float,
               dry_run: bool, again: bool, max_replays: int, parking_topic: str | None,
               keep_failure_headers: bool, as_json: bool, **filters: Any) -> None:
    """Send dead letters of TOPIC back (redrive). Resumable: run it again after a crash."""
    letters = connect(broker_url).dead_letters(topic)
    bar, update = _progress_bar("replaying")
    with bar:
        report = letters.replay(to=to, rate=rate, dry_run=dry_run, again=again,
                                max_replays=max_replays, parking_topic=parking_topic,
                                keep_failure_headers=keep_failure_headers,
                                ids=ids, progress=None if dry_run else update,
                                **_filters(**filters))
    if as_json:
        emit_json(dataclasses.asdict(report))
    else:
        verb = "would replay" if dry_run else "replayed"
        out.print(f"{verb} {report.selected if dry_run else report.replayed} letters"
                  f"{'' if dry_run else f', parked {report.parked}'}; skipped "
                  f"{report.skipped} already settled; {report.without_target} without a "
                  "known original topic (use --to)" + (" — cancelled" if report.cancelled
                                                       else ""))
        if report.truncated:
            out.print(f"left out {report.truncated} letters whose value was cut to fit the "
                      "dead-letter topic: replay those from their original topic and offset "
                      "(dlq show ID)")
        if not dry_run:
            out.print(f"replay id {report.replay_id} (header postroom-replay-id)")
        table = Table(title="per destination")
        table.add_column("topic")
        table.add_column("letters", justify="right")
        for t, n in sorted(report.per_target.items()):
            table.add_row(t, f"{n:,}")
        out.print(table)
    if report.cancelled:
        sys.exit(1)


@dlq.command("purge")
@click.argument("topic")
@click.argument("letter_ids", nargs=-1)
@broker_option
@click.option("--group", "fingerprint", default="", help="Every letter of this error group.")
@click.option("--note", default="", help="Why (kept in the ledger on Kafka).")
@click.option("--truncate", "truncate_to", default=None, metavar="PARTITION:OFFSET",
              help="Kafka: delete all records of PARTITION below OFFSET, for good.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@reports_errors
def dlq_purge(topic: str, letter_ids: tuple[str, ...], broker_url: str, fingerprint: str,
              note: str, truncate_to: str | None, yes: bool) -> None:
    """Settle dead letters: delete them (Redis) or mark them resolved (Kafka)."""
    letters = connect(broker_url).dead_letters(topic)
    if truncate_to:
        partition, _, offset = truncate_to.partition(":")
        if not (partition.isdigit() and offset.isdigit()):
            raise click.BadParameter("--truncate takes PARTITION:OFFSET, e.g. 0:1500")
        if not yes:
            click.confirm(f"Delete every record of {topic}[{partition}] below offset {offset} "
                          "for good?", abort=True)
        low = letters.truncate(int(partition), int(offset), confirm=True)
        out.print(f"{topic}[{partition}] now starts at offset {low}")
        return
    ids = list(letter_ids)
    if fingerprint:
        ids += [d.id for d in letters.list(limit=1 << 62, fingerprint=fingerprint)]
    if not ids:
        raise click.UsageError("name letters (ids) or a --group to purge")
    if not yes:
        click.confirm(f"Purge {len(ids)} dead letters of {topic}?", abort=True)
    n = letters.purge(ids, note=note)
    out.print(f"purged {n} dead letters")


@dlq.command("export")
@click.argument("topic")
@broker_option
@filter_options
@click.option("--id", "ids", multiple=True, help="Only these letters (repeatable).")
@click.option("--out", "path", default="-", show_default=True, help="File, or - for stdout.")
@reports_errors
def dlq_export(topic: str, broker_url: str, ids: tuple[str, ...], path: str,
               **filters: Any) -> None:
    """Write dead letters as JSON Lines (binary safe)."""
    letters = connect(broker_url).dead_letters(topic)
    target: str | IO[str] = sys.stdout if path == "-" else path
    n = letters.export(target, ids=ids, **_filters(**filters))
    err.print(f"exported {n} dead letters")


@dlq.command("import")
@click.argument("topic")
@click.argument("path")
@broker_option
@click.option("--to", default=None, help="Destination topic (default: TOPIC).")
@reports_errors
def dlq_import(topic: str, path: str, broker_url: str, to: str | None) -> None:
    """Send the letters of a JSON Lines export to TOPIC, byte for byte."""
    n = connect(broker_url).dead_letters(topic).import_(path, to=to)
    out.print(f"imported {n} dead letters into {to or topic}")


# -- lag ----------------------------------------------------------------------------------

@main.command()
@click.argument("group")
@click.argument("topics_", nargs=-1, metavar="[TOPICS]...")
@broker_option
@json_option
@reports_errors
def lag(group: str, topics_: tuple[str, ...], broker_url: str, as_json: bool) -> None:
    """Consumer-group lag per partition (Kafka) or stream (Redis)."""
    rows = connect(broker_url).lag(group, list(topics_) or None)
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"lag of group {group}")
    for column in ("topic", "partition", "committed", "end", "lag", "pending"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(r["topic"], str(r["partition"]), *("" if r[k] is None else str(r[k])
                                                         for k in ("committed", "end", "lag",
                                                                   "pending")))
    out.print(table)


# -- broker -------------------------------------------------------------------------------

@main.command("broker")
@click.option("--name", default="", help="Name of the embedded broker (embedded://NAME).")
@click.option("--port", type=int, default=None,
              help="Also accept bootstrap connections on this local port.")
@click.option("--topic", "topics_", multiple=True, metavar="NAME[:PARTITIONS]",
              help="Create a topic at start (repeatable).")
def serve_broker(name: str, port: int | None, topics_: tuple[str, ...]) -> None:
    """Serve the embedded (in-memory, development-only) broker to other processes."""
    from ._core import EmbeddedBroker

    broker = EmbeddedBroker.shared(name)
    for spec in topics_:
        topic, _, parts = spec.partition(":")
        broker.create_topic(topic, int(parts or 3))
    bootstrap = broker.bootstrap_servers
    out.print(f"embedded broker ready: kafka://{bootstrap}  (in memory; Ctrl-C stops)")
    if port is None:
        _wait_for_signal()
        return
    asyncio.run(_forward(port, bootstrap))


def _wait_for_signal() -> None:
    stop = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop:
        time.sleep(0.2)


async def _forward(port: int, bootstrap: str) -> None:
    """Accepts connections on 127.0.0.1:port and relays them to the embedded broker.
    Kafka clients bootstrap here, then follow the broker's advertised address."""
    target_host, target_port = bootstrap.split(",")[0].rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            broker_r, broker_w = await asyncio.open_connection(target_host, int(target_port))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, broker_w), pipe(broker_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    out.print(f"also listening on kafka://127.0.0.1:{port}")
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    async with server:
        await stopped.wait()


if __name__ == "__main__":
    main()


# -- outbox -------------------------------------------------------------------------------

db_option = click.option(
    "--db", "database_url", envvar="POSTROOM_DB", required=True,
    help="The outbox's database: sqlite:///path.db or postgresql://user@host:port/db.")
table_option = click.option("--table", default="postroom_outbox", show_default=True,
                            help="The outbox table.")


@main.group()
def outbox() -> None:
    """Relay the transactional outbox to the broker, and look at it."""


@outbox.command("relay")
@broker_option
@db_option
@table_option
@click.option("--topic", default=None, help="Topic for rows without one (default: their "
              "aggregate type, or the topic template).")
@click.option("--routing", type=click.Choice(["postroom", "debezium"]), default="postroom",
              show_default=True, help="debezium: Debezium's outbox event router defaults, "
              "topic outbox.event.${routedByValue}.")
@click.option("--topic-template", default=None, help="Topic for rows without one, "
              "${routedByValue} being the route-by column's value (Debezium's "
              "route.topic.replacement).")
@click.option("--route-by-field", default="aggregatetype", show_default=True,
              help="The column ${routedByValue} stands for (Debezium's route.by.field).")
@click.option("--additional-placement", default=None, help="Columns copied to headers, in "
              "Debezium's table.fields.additional.placement syntax: column:header[:alias],...")
@click.option("--batch-size", default=500, show_default=True)
@click.option("--poll-interval", default=0.5, show_default=True, help="Seconds between polls "
              "when idle.")
@click.option("--retention", default=0.0, show_default=True,
              help="Delete sent rows older than this many seconds (0: keep them).")
@click.option("--idle-exit", default=None, type=float,
              help="Exit after this many seconds with nothing pending (default: run until "
                   "SIGINT/SIGTERM).")
@json_option
@reports_errors
def outbox_relay(broker_url: str, database_url: str, table: str, topic: str | None,
                 routing: str, topic_template: str | None, route_by_field: str,
                 additional_placement: str | None, batch_size: int, poll_interval: float,
                 retention: float, idle_exit: float | None, as_json: bool) -> None:
    """Publish committed outbox rows until stopped (SIGINT/SIGTERM stop it cleanly)."""
    from .outbox import Outbox

    with Outbox(database_url, broker_url, table=table, topic=topic, batch_size=batch_size,
                poll_interval=poll_interval, retention=retention, routing=routing,
                topic_template=topic_template, route_by_field=route_by_field,
                additional_headers=additional_placement) as box:
        if not as_json:
            err.print(f"relaying {table} from {redacted_url(database_url)} to "
                      f"{redacted_url(broker_url)} (Ctrl-C to stop)")
        counters = box.run(idle_timeout=idle_exit)
        status = box.status()
    result = {"published": counters.published, "failed": counters.failed,
              "batches": counters.batches, "pending": status.pending}
    if as_json:
        emit_json(result)
    else:
        out.print(f"published {counters.published}, failed {counters.failed}, "
                  f"still pending {status.pending}")


@outbox.command("migrate")
@db_option
@table_option
@json_option
@reports_errors
def outbox_migrate(database_url: str, table: str, as_json: bool) -> None:
    """Create the outbox table, or add the relay's columns to an existing one laid out as
    Debezium's documentation shows (id, aggregatetype, aggregateid, type, payload), in place
    (PostgreSQL). It waits for the transactions writing the table; its rows become pending,
    to be published once each in the order they were written."""
    from .outbox import Outbox

    with Outbox(database_url, table=table, migrate=True) as box:
        added = box.added_columns
        payload = box.payload_column
        pending = box.status().pending
    if as_json:
        emit_json({"table": table, "added_columns": added, "payload": payload,
                   "pending": pending})
    elif added:
        out.print(f"{table}: added {', '.join(added)}; payload {payload}; "
                  f"{pending} row(s) pending")
    else:
        out.print(f"{table}: nothing to add (payload {payload}, {pending} row(s) pending)")


@outbox.command("status")
@db_option
@table_option
@json_option
@reports_errors
def outbox_status(database_url: str, table: str, as_json: bool) -> None:
    """Pending, failed and sent rows, the oldest pending row's age, and why rows failed."""
    from .outbox import Outbox

    with Outbox(database_url, table=table) as box:
        status = box.status()
    if as_json:
        emit_json({"pending": status.pending, "failed": status.failed, "sent": status.sent,
                   "oldest_pending_age": status.oldest_pending_age,
                   "failed_rows": [vars(r) for r in status.failed_rows]})
        return
    age = ("-" if status.oldest_pending_age is None
           else f"{status.oldest_pending_age:.1f} s")
    out.print(f"{table}: pending {status.pending} (oldest {age}), failed {status.failed}, "
              f"sent {status.sent}")
    if status.failed_rows:
        failed = Table(title="failed rows (fix, then: postroom outbox requeue)")
        for column in ("seq", "id", "aggregate", "topic", "error"):
            failed.add_column(column)
        for r in status.failed_rows:
            failed.add_row(str(r.seq), r.id, r.aggregate_id, r.topic, r.error)
        out.print(failed)


@outbox.command("requeue")
@db_option
@table_option
@json_option
@reports_errors
def outbox_requeue(database_url: str, table: str, as_json: bool) -> None:
    """Put failed rows back to pending, after fixing why they failed."""
    from .outbox import Outbox

    with Outbox(database_url, table=table) as box:
        n = box.requeue_failed()
    if as_json:
        emit_json({"requeued": n})
    else:
        out.print(f"requeued {n} failed row(s)")
