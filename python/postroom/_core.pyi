"""
postroom's C++ core (private; use the postroom package)
"""
from __future__ import annotations

import collections.abc
import typing

__all__: list[str] = ['BatchResult', 'DeliveryReport', 'ERROR_KINDS', 'EmbeddedBroker', 'Event', 'HandlerContext', 'IdempotencyStore', 'KafkaAdmin', 'KafkaConsumer', 'KafkaProducer', 'MemoryStore', 'Message', 'PostgresStore', 'Processor', 'RedisStore', 'SqliteStore', 'TopicInfo', 'default_log_level', 'is_valid_table_name', 'new_event_id', 'open_store', 'set_default_log_level']
class Event:
    """
    A CloudEvents 1.0 event.

    Required: type and source; id defaults to a fresh UUID and time to now (pass time=None to
    leave it out). data may be bytes, str, or a JSON-serialisable dict/list; the content type
    defaults to application/octet-stream, text/plain or application/json accordingly.
    Invalid attributes raise postroom.errors.CodecError naming the attribute.
    """
    __hash__: typing.ClassVar[None]  # type: ignore[assignment]
    @staticmethod
    def from_json(text: typing.Any) -> Event:
        ...
    def __copy__(self) -> Event:
        ...
    def __deepcopy__(self, memo: dict[int, typing.Any]) -> Event:
        ...
    def __eq__(self, arg0: object) -> bool:
        ...
    def __init__(self, *, type: str, source: str, id: typing.Any = None, data: typing.Any = None, datacontenttype: typing.Any = None, time: typing.Any = ..., subject: typing.Any = None, dataschema: typing.Any = None, extensions: typing.Any = None, specversion: str = '1.0') -> None:
        ...
    def __repr__(self) -> str:
        ...
    def json(self) -> typing.Any:
        """
        The payload parsed as JSON.
        """
    def to_json(self) -> str:
        """
        JSON structured mode (application/cloudevents+json).
        """
    def validate(self) -> None:
        ...
    @property
    def data(self) -> bytes | None:
        """
        The payload as bytes, or None.
        """
    @property
    def datacontenttype(self) -> str | None:
        ...
    @property
    def dataschema(self) -> str | None:
        ...
    @property
    def extensions(self) -> dict[str, str]:
        """
        Extension attributes (a copy).
        """
    @property
    def id(self) -> str:
        ...
    @property
    def source(self) -> str:
        ...
    @property
    def specversion(self) -> str:
        ...
    @property
    def subject(self) -> str | None:
        ...
    @property
    def text(self) -> str | None:
        """
        The payload decoded as UTF-8, or None.
        """
    @property
    def time(self) -> str | None:
        ...
    @property
    def type(self) -> str:
        ...
class DeliveryReport:
    """
    What the broker said about one message.
    """
    def __repr__(self) -> str:
        ...
    @property
    def error(self) -> str | None:
        ...
    @property
    def error_code(self) -> int:
        ...
    @property
    def offset(self) -> int:
        ...
    @property
    def ok(self) -> bool:
        ...
    @property
    def partition(self) -> int:
        ...
    @property
    def persistence(self) -> str:
        ...
    @property
    def retriable(self) -> bool | None:
        ...
class BatchResult:
    """
    Delivery reports of one batch, in the order the messages were given.
    """
    def __getitem__(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> DeliveryReport:
        ...
    def __len__(self) -> int:
        ...
    def __repr__(self) -> str:
        ...
    def failures(self) -> list[tuple[int, DeliveryReport]]:
        """
        (index, DeliveryReport) for every message that failed.
        """
    def raise_for_failures(self) -> None:
        ...
    @property
    def delivered(self) -> int:
        ...
    @property
    def done(self) -> bool:
        ...
    @property
    def failed(self) -> int:
        ...
    @property
    def pending(self) -> int:
        ...
    @property
    def reports(self) -> list[DeliveryReport]:
        ...
class Message:
    """
    A consumed record.
    """
    def __repr__(self) -> str:
        ...
    def event(self) -> Event:
        """
        Decodes the CloudEvent (binary or structured mode); raises CodecError if it is not one.
        """
    def header(self, name: str) -> bytes | None:
        """
        The first header with this name, or None.
        """
    @property
    def headers(self) -> list[tuple[str, bytes | None]]:
        ...
    @property
    def is_event(self) -> bool:
        ...
    @property
    def key(self) -> bytes | None:
        ...
    @property
    def offset(self) -> int:
        ...
    @property
    def partition(self) -> int:
        ...
    @property
    def timestamp_ms(self) -> int:
        ...
    @property
    def topic(self) -> str:
        ...
    @property
    def value(self) -> bytes | None:
        ...
class KafkaProducer:
    def __init__(self, *, broker_url: str, client_id: str, idempotent: bool, acks: str, compression: str, linger: typing.SupportsFloat | typing.SupportsIndex, delivery_timeout: typing.SupportsFloat | typing.SupportsIndex, close_timeout: typing.SupportsFloat | typing.SupportsIndex, properties: dict[str, str]) -> None:
        ...
    def close(self, timeout: typing.SupportsFloat | typing.SupportsIndex | None = None) -> None:
        ...
    def flush(self, timeout: typing.SupportsFloat | typing.SupportsIndex | None = None) -> bool:
        ...
    def poll(self, timeout: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> int:
        ...
    def produce(self, topic: str, value: typing.Any, *, key: typing.Any = None, headers: typing.Any = None, partition: typing.SupportsInt | typing.SupportsIndex | None = None, mode: str = 'binary', on_delivery: typing.Any = None) -> None:
        ...
    def send(self, topic: str, value: typing.Any, *, key: typing.Any = None, headers: typing.Any = None, partition: typing.SupportsInt | typing.SupportsIndex | None = None, mode: str = 'binary', timeout: typing.SupportsFloat | typing.SupportsIndex | None = None) -> DeliveryReport:
        ...
    def send_batch(self, topic: str, items: collections.abc.Iterable[typing.Any], *, key: typing.Any = None, mode: str = 'binary', wait: bool = True) -> BatchResult:
        ...
    def wait(self, batch: BatchResult, timeout: typing.SupportsFloat | typing.SupportsIndex | None = None) -> bool:
        ...
    @property
    def closed(self) -> bool:
        ...
    @property
    def idempotence_enabled(self) -> bool:
        ...
    @property
    def in_flight(self) -> int:
        ...
class KafkaConsumer:
    def __init__(self, *, broker_url: str, client_id: str, group_id: str, offset_reset: str, session_timeout: typing.SupportsFloat | typing.SupportsIndex, max_poll_interval: typing.SupportsFloat | typing.SupportsIndex, properties: dict[str, str]) -> None:
        ...
    def assign(self, partitions: collections.abc.Iterable[typing.Any]) -> None:
        ...
    def assignment(self) -> list[tuple[str, int]]:
        ...
    def close(self) -> None:
        ...
    def commit(self) -> list[tuple[str, int, int]]:
        ...
    def committed(self, partitions: collections.abc.Iterable[typing.Any], timeout: typing.SupportsFloat | typing.SupportsIndex = 10.0) -> list[tuple[str, int, int]]:
        ...
    def mark_done(self, message: Message) -> None:
        ...
    def mark_done_offset(self, topic: str, partition: typing.SupportsInt | typing.SupportsIndex, offset: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def poll(self, timeout: typing.SupportsFloat | typing.SupportsIndex | None = None) -> Message | None:
        ...
    def poll_batch(self, max_messages: typing.SupportsInt | typing.SupportsIndex, timeout: typing.SupportsFloat | typing.SupportsIndex | None = None) -> list[Message]:
        ...
    def seek(self, topic: str, partition: typing.SupportsInt | typing.SupportsIndex, offset: typing.SupportsInt | typing.SupportsIndex, timeout: typing.SupportsFloat | typing.SupportsIndex = 10.0) -> None:
        ...
    def subscribe(self, topics: collections.abc.Sequence[str], *, on_assigned: typing.Any = None, on_revoked: typing.Any = None, on_lost: typing.Any = None) -> None:
        ...
    @property
    def closed(self) -> bool:
        ...
    @property
    def outstanding(self) -> int:
        ...
class TopicInfo:
    def __repr__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def partitions(self) -> int:
        ...
    @property
    def replication_factor(self) -> int:
        ...
class KafkaAdmin:
    def __init__(self, *, broker_url: str, client_id: str, timeout: typing.SupportsFloat | typing.SupportsIndex, properties: dict[str, str]) -> None:
        ...
    def create_topic(self, name: str, partitions: typing.SupportsInt | typing.SupportsIndex = 3, replication_factor: typing.SupportsInt | typing.SupportsIndex = 1, config: collections.abc.Mapping[str, str] = {}, exist_ok: bool = False) -> None:
        ...
    def delete_topic(self, name: str) -> None:
        ...
    def describe_topic(self, name: str) -> TopicInfo | None:
        ...
    def list_topics(self) -> list[TopicInfo]:
        ...
    def ping(self) -> None:
        ...
    def watermarks(self, topic: str, partition: typing.SupportsInt | typing.SupportsIndex) -> tuple[int, int]:
        ...
class EmbeddedBroker:
    @staticmethod
    def shared(name: str = '') -> EmbeddedBroker:
        """
        The broker behind embedded://NAME in this process.
        """
    def clear_request_errors(self, api_key: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def create_topic(self, topic: str, partitions: typing.SupportsInt | typing.SupportsIndex = 3, replication_factor: typing.SupportsInt | typing.SupportsIndex = 1) -> None:
        ...
    def has_topic(self, topic: str) -> bool:
        ...
    def push_request_errors(self, api_key: typing.SupportsInt | typing.SupportsIndex, errors: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> None:
        ...
    def set_broker_down(self, broker_id: typing.SupportsInt | typing.SupportsIndex = 1) -> None:
        ...
    def set_broker_rtt(self, broker_id: typing.SupportsInt | typing.SupportsIndex, rtt_ms: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def set_broker_up(self, broker_id: typing.SupportsInt | typing.SupportsIndex = 1) -> None:
        ...
    @property
    def bootstrap_servers(self) -> str:
        ...
class IdempotencyStore:
    def contains(self, scope: str, key: str) -> bool:
        ...
    def purge_older_than(self, seconds: typing.SupportsFloat | typing.SupportsIndex) -> int:
        ...
    @property
    def kind(self) -> str:
        ...
class MemoryStore(IdempotencyStore):
    def __init__(self, capacity: typing.SupportsInt | typing.SupportsIndex = 1000000) -> None:
        ...
    def __len__(self) -> int:
        ...
class SqliteStore(IdempotencyStore):
    def __init__(self, path: str, table: str = 'postroom_processed', busy_timeout: typing.SupportsFloat | typing.SupportsIndex = 30.0) -> None:
        ...
    @property
    def path(self) -> str:
        ...
class PostgresStore(IdempotencyStore):
    def __init__(self, url: str, table: str = 'postroom_processed', pool_size: typing.SupportsInt | typing.SupportsIndex = 4) -> None:
        ...
class RedisStore(IdempotencyStore):
    def __init__(self, url: str, retention: typing.SupportsFloat | typing.SupportsIndex = 604800.0, prefix: str = 'postroom:processed:', lease: typing.SupportsFloat | typing.SupportsIndex = 60.0) -> None:
        ...
class HandlerContext:
    """
    What a handler gets besides the event; valid only while the handler runs.
    """
    def execute(self, sql: str, params: collections.abc.Iterable[typing.Any] = ()) -> list[tuple[typing.Any, ...]]:
        """
        Runs SQL in the store's transaction (SQL stores), so the handler's writes and the dedupe mark commit or roll back together. Returns the rows.
        """
    def redis_command(self, *args: str | bytes | int | float) -> None:
        """
        Queues a Redis command (Redis store) to run when the event commits, in the same MULTI/EXEC as the dedupe mark: the effect and the mark apply together, once. Arguments are str, bytes or numbers. Returns nothing: the command runs later.
        """
    @property
    def attempt(self) -> int:
        ...
    @property
    def message(self) -> Message:
        ...
class Processor:
    def __init__(self, *, name: str, broker_url: str, group_id: str, topics: collections.abc.Sequence[str], handler: collections.abc.Callable[..., typing.Any], store: IdempotencyStore, dead_letter_topic: str, max_attempts: typing.SupportsInt | typing.SupportsIndex, initial_delay: typing.SupportsFloat | typing.SupportsIndex, multiplier: typing.SupportsFloat | typing.SupportsIndex, max_delay: typing.SupportsFloat | typing.SupportsIndex, jitter: typing.SupportsFloat | typing.SupportsIndex, non_retryable: tuple[type[BaseException], ...], max_payload_bytes: typing.SupportsInt | typing.SupportsIndex, key_header: str, key_function: typing.Any, batch_size: typing.SupportsInt | typing.SupportsIndex, concurrency: typing.SupportsInt | typing.SupportsIndex, commit_interval: typing.SupportsFloat | typing.SupportsIndex, blocked_backoff_max: typing.SupportsFloat | typing.SupportsIndex, flood_max_failure_ratio: typing.SupportsFloat | typing.SupportsIndex, flood_window: typing.SupportsInt | typing.SupportsIndex, flood_min_events: typing.SupportsInt | typing.SupportsIndex, flood_pause: typing.SupportsFloat | typing.SupportsIndex, retention: typing.SupportsFloat | typing.SupportsIndex, purge_interval: typing.SupportsFloat | typing.SupportsIndex, retry_topic_delays: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], consumer_properties: dict[str, str], producer_properties: dict[str, str]) -> None:
        ...
    def close(self) -> None:
        ...
    def counters(self) -> dict[str, typing.Any]:
        ...
    def run_once(self, timeout: typing.SupportsFloat | typing.SupportsIndex = 0.1) -> int:
        ...
    def stop(self) -> None:
        ...
    @property
    def dead_letter_topic(self) -> str:
        ...
    @property
    def group_id(self) -> str:
        ...
    @property
    def stopping(self) -> bool:
        ...
def default_log_level() -> int:
    ...
def is_valid_table_name(name: str) -> bool:
    ...
def new_event_id() -> str:
    """
    A fresh random UUID (version 4) as text.
    """
def open_store(url: str) -> IdempotencyStore:
    ...
def set_default_log_level(level: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    librdkafka lines at or below this syslog level go to stderr (-1 = none).
    """
ERROR_KINDS: tuple[str, ...]
