"""postroom.Processor at the limits of what a topic takes: dead letters and retries larger
than their topic, records a topic refuses for good, names that can never be topics, and
error texts that echo hostile input. Size limits are the real broker's (max.message.bytes);
the embedded broker keeps none."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import postroom
from postroom import errors

from .conftest import require_env, unique

MiB = 1 << 20
BIG = {"max.message.bytes": str(3 * MiB)}  # the default is 1 MiB (1,048,588 bytes)


@pytest.fixture
def kafka() -> Iterator[postroom.Broker]:
    broker = postroom.connect(require_env("POSTROOM_KAFKA_URL"))
    made: list[str] = []
    broker.made = made  # type: ignore[attr-defined]
    yield broker
    for t in made:
        if broker.topic(t) is not None:
            broker.delete_topic(t)


def make_topic(broker: postroom.Broker, name: str, config: dict[str, str] | None = None) -> str:
    broker.create_topic(name, 1, config=config or {})
    broker.made.append(name)  # type: ignore[attr-defined]
    return name


def binary_event(event_id: str, value: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A binary-mode CloudEvent record as any Kafka client writes it."""
    return value, [("ce_specversion", b"1.0"), ("ce_id", event_id.encode()),
                   ("ce_source", b"/test"), ("ce_type", b"blob.stored"),
                   ("content-type", b"application/octet-stream")]


def send_records(broker: postroom.Broker, topic: str,
                 records: list[tuple[bytes, list[tuple[str, bytes]]]], key: str | None = "k"
                 ) -> None:
    with broker.producer(properties={"message.max.bytes": str(4 * MiB)}) as producer:
        for value, headers in records:
            producer.send(value, topic=topic, key=key, headers=headers)


def run_guarded(processor: postroom.Processor, *, idle_timeout: float, limit: float = 90.0
                ) -> postroom.ProcessorCounters:
    """processor.run(idle_timeout=...), stopped by a watchdog after ``limit`` seconds; fails
    when the watchdog had to stop it (the processor hung)."""
    watchdog = threading.Timer(limit, processor.stop)
    watchdog.start()
    started = time.monotonic()
    try:
        counters = processor.run(idle_timeout=idle_timeout, handle_signals=False)
    finally:
        watchdog.cancel()
    assert time.monotonic() - started < limit - 1, "run() did not return: the partition stalled"
    return counters


def read_all(broker: postroom.Broker, topic: str, n: int) -> list[postroom.Message]:
    with broker.consumer(unique("reader"), topic,
                         properties={"fetch.message.max.bytes": str(4 * MiB)}) as consumer:
        return list(consumer.messages(idle_timeout=5.0, limit=n))


@pytest.mark.kafka
def test_an_event_too_large_for_its_dead_letter_topic_is_cut_to_fit_and_the_partition_moves_on(
        kafka: postroom.Broker) -> None:
    source = make_topic(kafka, unique("blobs"), BIG)
    dlq = make_topic(kafka, source + ".dlq")  # the broker's default: 1 MiB
    big = bytes(range(256)) * (2 * MiB // 256)
    send_records(kafka, source, [binary_event("big", big), binary_event("small", b"ok")])
    applied: list[str] = []
    processor = postroom.Processor(kafka, name=unique("p"), topics=source,
                                   handler=lambda e, c: applied.append(e.id))
    with processor:
        counters = run_guarded(processor, idle_timeout=5.0)
    assert applied == ["small"], "the next event is applied"
    assert (counters.dead_lettered, counters.processed) == (1, 1)

    [letter] = read_all(kafka, dlq, 1)
    headers = dict(letter.headers)
    assert headers["postroom-dlt-reason"] == b"too-large"
    assert headers["postroom-dlt-value-truncated"] == b"true"
    assert headers["postroom-dlt-value-length"] == str(len(big)).encode()
    assert (headers["postroom-dlt-original-topic"], headers["postroom-dlt-original-offset"]) == (
        source.encode(), b"0"), "where the whole event still is"
    assert headers["ce_id"] == b"big", "the original headers are kept"
    assert letter.value is not None and 900_000 < len(letter.value) < MiB
    assert big.startswith(letter.value), "the value is a prefix of the original"

    decoded = kafka.dead_letters(dlq).list(limit=10)
    assert [(d.value_truncated, d.value_length) for d in decoded] == [(True, len(big))]
    report = kafka.dead_letters(dlq).replay()
    assert (report.truncated, report.replayed) == (1, 0), "a cut letter is never replayed"
    assert kafka.watermarks(source, 0)[1] == 2, "nothing was sent back"


@pytest.mark.kafka
def test_an_event_too_large_for_its_retry_topic_is_dead_lettered_whole(
        kafka: postroom.Broker) -> None:
    source = make_topic(kafka, unique("blobs"), BIG)
    make_topic(kafka, source + ".retry.1")  # 1 MiB: too small for the event
    dlq = make_topic(kafka, source + ".dlq", BIG)
    big = b"x" * (2 * MiB)
    send_records(kafka, source, [binary_event("big", big), binary_event("small", b"ok")])
    applied: list[str] = []

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        if event.id == "big":
            raise ConnectionError("downstream unavailable")
        applied.append(event.id)

    processor = postroom.Processor(
        kafka, name=unique("p"), topics=source, handler=handler, max_payload_bytes=3 * MiB,
        retry=postroom.RetryPolicy(max_attempts=1), retry_topics=[1.0])
    with processor:
        counters = run_guarded(processor, idle_timeout=5.0)
    assert applied == ["small"]
    assert (counters.retry_topic_sends, counters.dead_lettered) == (0, 1)
    [letter] = read_all(kafka, dlq, 1)
    headers = dict(letter.headers)
    assert headers["postroom-dlt-reason"] == b"too-large-for-retry-topic"
    assert headers["postroom-dlt-error-message"] == b"downstream unavailable"
    assert "postroom-dlt-value-truncated" not in headers
    assert letter.value == big, "the dead-letter topic takes it whole"

    # Replayed whole to its original topic, which takes it.
    report = kafka.dead_letters(dlq).replay()
    assert (report.replayed, report.truncated) == (1, 0)
    replayed = read_all(kafka, source, 3)[-1]
    assert replayed.value == big and dict(replayed.headers)["ce_id"] == b"big"

    # To a topic that does not take it: a clear error, nothing recorded, resumable.
    small = make_topic(kafka, unique("small"))
    with pytest.raises(errors.PostroomError, match=r"max\.message\.bytes.*run the replay again"):
        kafka.dead_letters(dlq).replay(to=small, again=True)
    assert kafka.watermarks(small, 0) == (0, 0)


@pytest.mark.kafka
def test_a_dead_letter_topic_that_cannot_take_even_the_headers_stops_the_processor(
        kafka: postroom.Broker) -> None:
    source = make_topic(kafka, unique("orders"))
    make_topic(kafka, source + ".dlq", {"max.message.bytes": "300"})
    send_records(kafka, source, [binary_event("poison", b"{}"), binary_event("next", b"{}")])
    applied: list[str] = []

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        if event.id == "poison":
            raise errors.NonRetryableError("cannot handle " + "x" * 500)
        applied.append(event.id)

    name = unique("p")
    processor = postroom.Processor(kafka, name=name, topics=source, handler=handler,
                                   blocked_backoff_max=0.2)
    started = time.monotonic()
    fits_not = r"does not fit the dead-letter topic .*max\.message\.bytes"
    with processor, pytest.raises(errors.ConfigurationError, match=fits_not):
        run_guarded(processor, idle_timeout=30.0)
    assert time.monotonic() - started < 25, "stopped at once, not after the idle timeout"
    assert applied == [], "nothing past the poison event"

    # Nothing was lost: a processor whose dead-letter topic takes the letter gets the poison
    # event again, then the next one.
    bigger = make_topic(kafka, unique("orders-dlq"))
    again = postroom.Processor(kafka, name=name, topics=source, handler=handler,
                               dead_letter_topic=bigger)
    with again:
        counters = run_guarded(again, idle_timeout=5.0)
    assert applied == ["next"]
    assert counters.dead_lettered == 1


@pytest.mark.kafka
def test_a_record_the_dead_letter_topic_refuses_for_good_stops_the_processor_after_a_few_tries(
        kafka: postroom.Broker) -> None:
    source = make_topic(kafka, unique("orders"))
    # A compacted topic refuses records without a key (INVALID_RECORD): no wait mends that.
    make_topic(kafka, source + ".dlq", {"cleanup.policy": "compact"})
    send_records(kafka, source, [binary_event("poison", b"{}")], key=None)

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        raise errors.NonRetryableError("cannot handle it")

    processor = postroom.Processor(kafka, name=unique("p"), topics=source, handler=handler,
                                   blocked_backoff_max=0.2)
    started = time.monotonic()
    with processor, pytest.raises(errors.PostroomError,
                                  match=r"stopped: the record .* could not be written to "
                                        r"'.*\.dlq' \(5 tries\)"):
        run_guarded(processor, idle_timeout=60.0)
    assert time.monotonic() - started < 50, "stopped after its tries, not at the idle timeout"
    assert processor.counters.dead_lettered == 0


@pytest.mark.parametrize("bad", ["a;b", "orders with spaces", "x" * 250, ".."])
def test_a_name_that_can_never_be_a_topic_is_reported_as_invalid(
        broker: postroom.Broker, bad: str) -> None:
    with pytest.raises(errors.ConfigurationError, match="not a valid Kafka topic name"):
        postroom.Processor(broker, name=unique("p"), topics=bad, handler=lambda e, c: None)
    broker.create_topic(topic := unique("fine"), 1)
    with pytest.raises(errors.ConfigurationError, match="not a valid Kafka topic name"):
        postroom.Processor(broker, name=unique("p"), topics=topic, handler=lambda e, c: None,
                           dead_letter_topic=bad)


def test_error_texts_echo_hostile_input_bounded(broker: postroom.Broker) -> None:
    source = unique("orders")
    broker.create_topic(source, 1)
    broker.create_topic(source + ".dlq", 1)
    long_name = "x" * 10_000
    value, headers = binary_event("ext", b"{}")
    with broker.producer() as producer:
        producer.send(value, topic=source, key="k",
                      headers=[*headers, ("ce_" + long_name, b"v")])
    with pytest.raises(errors.CodecError) as raised:
        postroom.Event(type="t", source="/s", extensions={long_name: "v"})
    assert len(str(raised.value)) < 300 and "10000 bytes" in str(raised.value)
    with postroom.Processor(broker, name=unique("p"), topics=source,
                            handler=lambda e, c: None) as processor:
        run_guarded(processor, idle_timeout=3.0)
    [letter] = read_all(broker, source + ".dlq", 1)
    message = dict(letter.headers)["postroom-dlt-error-message"]
    assert len(message) < 300 and b"10000 bytes" in message, message
