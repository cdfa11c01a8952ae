"""
postroom's C++ core (private; use the postroom package)
"""
from __future__ import annotations

import collections.abc
import typing

__all__: list[str] = ['BatchContext', 'BatchResult', 'BrokerUrl', 'DeadLetter', 'DeadLetterGroup', 'DeadLetterQueue', 'DeliveryReport', 'ERROR_KINDS', 'EmbeddedBroker', 'Event', 'HandlerContext', 'IdempotencyStore', 'KafkaAdmin', 'KafkaConsumer', 'KafkaProducer', 'MemoryStore', 'Message', 'Outbox', 'PostgresStore', 'Processor', 'RedisAdmin', 'RedisConsumer', 'RedisProducer', 'RedisStore', 'SqliteStore', 'TopicInfo', 'dead_letter_fingerprint', 'decode_dead_letter', 'default_log_level', 'is_valid_table_name', 'new_event_id', 'normalise_error_message', 'open_store', 'outbox_insert_statement', 'outbox_row', 'parse_additional_placement', 'parse_broker_url', 'redact_secrets', 'redacted_url', 'set_default_log_level']
class BrokerUrl:
    """
    A broker URL, parsed and checked (it does not connect).
    """
    def __repr__(self) -> str:
        ...
    @property
    def bootstrap_servers(self) -> str:
        """
        kafka://: the host:port list for Kafka clients ('' for other schemes).
        """
    @property
    def embedded_name(self) -> str:
        """
        embedded://NAME: the name ('' = the default in-process broker).
        """
    @property
    def hosts(self) -> list[tuple[str, int]]:
        """
        (host, port) pairs (kafka, redis).
        """
    @property
    def redis_db(self) -> int:
        ...
    @property
    def scheme(self) -> str:
        """
        'kafka', 'embedded' or 'redis': which transport serves it.
        """
    @property
    def text(self) -> str:
        """
        The URL as given.
        """
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
    def id(self) -> str:
        """
        Redis Streams: the entry id ('' on Kafka).
        """
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
    def delivery_count(self) -> int:
        """
        Redis Streams: deliveries of this entry to the group (0 on Kafka).
        """
    @property
    def headers(self) -> list[tuple[str, bytes | None]]:
        ...
    @property
    def id(self) -> str:
        """
        Redis Streams: the entry id ('' on Kafka).
        """
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
    def position(self) -> str:
        """
        The entry id (Redis) or the offset (Kafka), as text.
        """
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
        Runs SQL in the store's transaction (SQL stores), so the handler's writes and the dedupe marks commit or roll back together. Returns the rows.
        """
    def redis_command(self, *args: str | bytes | int | float) -> None:
        """
        Queues a Redis command (Redis store) to run when the events commit, in the same MULTI/EXEC as the dedupe marks: the effect and the marks apply together, once. Arguments are str, bytes or numbers. Returns nothing: the command runs later.
        """
    @property
    def attempt(self) -> int:
        ...
    @property
    def message(self) -> Message:
        ...
class BatchContext:
    """
    What a batch handler gets besides the events; valid only while the handler runs.
    """
    def execute(self, sql: str, params: collections.abc.Iterable[typing.Any] = ()) -> list[tuple[typing.Any, ...]]:
        """
        Runs SQL in the store's transaction (SQL stores), so the handler's writes and the dedupe marks commit or roll back together. Returns the rows.
        """
    def redis_command(self, *args: str | bytes | int | float) -> None:
        """
        Queues a Redis command (Redis store) to run when the events commit, in the same MULTI/EXEC as the dedupe marks: the effect and the marks apply together, once. Arguments are str, bytes or numbers. Returns nothing: the command runs later.
        """
    @property
    def attempt(self) -> int:
        ...
    @property
    def messages(self) -> list[Message]:
        ...
class Processor:
    def __init__(self, *, name: str, broker_url: str, group_id: str, topics: collections.abc.Sequence[str], handler: collections.abc.Callable[..., typing.Any], batch: bool, store: IdempotencyStore, dead_letter_topic: str, max_attempts: typing.SupportsInt | typing.SupportsIndex, initial_delay: typing.SupportsFloat | typing.SupportsIndex, multiplier: typing.SupportsFloat | typing.SupportsIndex, max_delay: typing.SupportsFloat | typing.SupportsIndex, jitter: typing.SupportsFloat | typing.SupportsIndex, non_retryable: tuple[type[BaseException], ...], max_payload_bytes: typing.SupportsInt | typing.SupportsIndex, key_header: str, key_function: typing.Any, batch_size: typing.SupportsInt | typing.SupportsIndex, concurrency: typing.SupportsInt | typing.SupportsIndex, commit_interval: typing.SupportsFloat | typing.SupportsIndex, blocked_backoff_max: typing.SupportsFloat | typing.SupportsIndex, flood_max_failure_ratio: typing.SupportsFloat | typing.SupportsIndex, flood_window: typing.SupportsInt | typing.SupportsIndex, flood_min_events: typing.SupportsInt | typing.SupportsIndex, flood_pause: typing.SupportsFloat | typing.SupportsIndex, retention: typing.SupportsFloat | typing.SupportsIndex, purge_interval: typing.SupportsFloat | typing.SupportsIndex, retry_topic_delays: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], consumer_properties: dict[str, str], producer_properties: dict[str, str]) -> None:
        ...
    def close(self) -> None:
        ...
    def counters(self) -> dict[str, typing.Any]:
        ...
    def run_once(self, timeout: typing.SupportsFloat | typing.SupportsIndex = 0.1) -> int:
        ...
    def stop(self) -> None:
        ...
    def throw_if_failed(self) -> None:
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
class Outbox:
    def __init__(self, *, database_url: str, broker_url: str, table: str, topic: str, source: str, batch_size: typing.SupportsInt | typing.SupportsIndex, poll_interval: typing.SupportsFloat | typing.SupportsIndex, publish_timeout: typing.SupportsFloat | typing.SupportsIndex, lease: typing.SupportsFloat | typing.SupportsIndex, blocked_backoff_max: typing.SupportsFloat | typing.SupportsIndex, delete_sent: bool, retention: typing.SupportsFloat | typing.SupportsIndex, purge_interval: typing.SupportsFloat | typing.SupportsIndex, max_message_bytes: typing.SupportsInt | typing.SupportsIndex, producer_properties: dict[str, str], topic_template: str = '', route_by_field: str = 'aggregatetype', additional_fields: collections.abc.Sequence[tuple[str, str]] = [], migrate: bool = False) -> None:
        ...
    def close(self) -> None:
        ...
    def counters(self) -> dict[str, typing.Any]:
        ...
    def purge_sent_older_than(self, seconds: typing.SupportsFloat | typing.SupportsIndex) -> int:
        ...
    def relay_once(self) -> int:
        ...
    def requeue_failed(self) -> int:
        ...
    def run(self) -> None:
        ...
    def status(self) -> dict[str, typing.Any]:
        ...
    def stop(self) -> None:
        ...
    @property
    def added_columns(self) -> list[str]:
        ...
    @property
    def dialect(self) -> str:
        ...
    @property
    def payload_column(self) -> str:
        ...
    @property
    def stopping(self) -> bool:
        ...
class RedisProducer:
    def __init__(self, *, broker_url: str, maxlen: typing.SupportsInt | typing.SupportsIndex | None = None, timeout: typing.SupportsFloat | typing.SupportsIndex = 5.0) -> None:
        ...
    def close(self) -> None:
        ...
    def flush(self) -> None:
        ...
    def send(self, topic: str, value: typing.Any, *, key: typing.Any = None, headers: typing.Any = None, partition: typing.SupportsInt | typing.SupportsIndex | None = None, mode: str = 'binary') -> DeliveryReport:
        ...
    def send_batch(self, topic: str, items: collections.abc.Iterable[typing.Any], *, key: typing.Any = None, mode: str = 'binary', wait: bool = True) -> BatchResult:
        ...
    def wait(self, batch: BatchResult) -> bool:
        ...
    @property
    def in_flight(self) -> int:
        ...
class RedisConsumer:
    def __init__(self, *, broker_url: str, group: str, client_id: str, consumer: str, start_id: str, claim_min_idle: typing.SupportsFloat | typing.SupportsIndex, claim_interval: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def close(self) -> None:
        ...
    def commit(self) -> int:
        ...
    def mark_done(self, message: Message) -> None:
        ...
    def pause(self, partitions: collections.abc.Iterable[typing.Any]) -> None:
        ...
    def poll_batch(self, max_messages: typing.SupportsInt | typing.SupportsIndex, timeout: typing.SupportsFloat | typing.SupportsIndex | None) -> list[Message]:
        ...
    def redeliver_from(self, message: Message) -> None:
        ...
    def resume(self, partitions: collections.abc.Iterable[typing.Any]) -> None:
        ...
    def subscribe(self, streams: collections.abc.Sequence[str]) -> None:
        ...
    @property
    def consumer_name(self) -> str:
        ...
    @property
    def counters(self) -> dict[str, typing.Any]:
        ...
    @property
    def lag(self) -> dict[tuple[str, int], int]:
        ...
class RedisAdmin:
    def __init__(self, *, broker_url: str) -> None:
        ...
    def create_stream(self, stream: str) -> None:
        ...
    def exists(self, stream: str) -> bool:
        ...
    def groups(self, stream: str) -> list[dict[str, typing.Any]]:
        ...
    def length(self, stream: str) -> int:
        ...
    def list_topics(self) -> list[TopicInfo]:
        ...
    def pending(self, stream: str, group: str, count: typing.SupportsInt | typing.SupportsIndex = 1000) -> list[dict[str, typing.Any]]:
        ...
    def ping(self) -> None:
        ...
    def range(self, stream: str, start: str = '-', end: str = '+', count: typing.SupportsInt | typing.SupportsIndex = 1000, reverse: bool = False) -> list[Message]:
        ...
    def remove_entries(self, stream: str, ids: collections.abc.Sequence[str]) -> int:
        ...
    def remove_stream(self, stream: str) -> None:
        ...
class DeadLetter:
    """
    One dead letter, decoded from its headers.
    """
    def __repr__(self) -> str:
        ...
    @property
    def attempts(self) -> int | None:
        ...
    @property
    def convention(self) -> str:
        ...
    @property
    def error_message(self) -> str:
        ...
    @property
    def error_stack(self) -> str:
        ...
    @property
    def error_type(self) -> str:
        ...
    @property
    def failed_at(self) -> str:
        ...
    @property
    def fingerprint(self) -> str:
        ...
    @property
    def group(self) -> str:
        ...
    @property
    def id(self) -> str:
        ...
    @property
    def original_offset(self) -> str:
        ...
    @property
    def original_partition(self) -> int | None:
        ...
    @property
    def original_topic(self) -> str:
        ...
    @property
    def reason(self) -> str:
        ...
    @property
    def record(self) -> Message:
        ...
    @property
    def replay_count(self) -> int:
        ...
    @property
    def replay_id(self) -> str:
        ...
    @property
    def replayed_from(self) -> str:
        ...
    @property
    def value_length(self) -> int | None:
        ...
    @property
    def value_truncated(self) -> bool:
        ...
class DeadLetterGroup:
    """
    Dead letters with one error fingerprint.
    """
    @property
    def conventions(self) -> list[str]:
        ...
    @property
    def count(self) -> int:
        ...
    @property
    def error_type(self) -> str:
        ...
    @property
    def fingerprint(self) -> str:
        ...
    @property
    def first_seen_ms(self) -> int:
        ...
    @property
    def groups(self) -> set[str]:
        ...
    @property
    def last_seen_ms(self) -> int:
        ...
    @property
    def message(self) -> str:
        ...
    @property
    def original_topics(self) -> set[str]:
        ...
    @property
    def sample_id(self) -> str:
        ...
    @property
    def top_frame(self) -> str:
        ...
class DeadLetterQueue:
    def __init__(self, *, broker_url: str, topic: str, timeout: typing.SupportsFloat | typing.SupportsIndex = 15.0) -> None:
        ...
    def find(self, *, limit: typing.SupportsInt | typing.SupportsIndex = 50, skip: typing.SupportsInt | typing.SupportsIndex = 0, newest_first: bool = True, include_settled: bool = False, since_ms: typing.SupportsInt | typing.SupportsIndex | None = None, until_ms: typing.SupportsInt | typing.SupportsIndex | None = None, key: typing.Any = None, header_name: str = '', header_value: typing.Any = None, error_type: str = '', original_topic: str = '', fingerprint: str = '', text: str = '', ids: collections.abc.Sequence[str] = []) -> list[DeadLetter]:
        ...
    def ledger(self) -> dict[str, typing.Any]:
        ...
    def replay(self, *, to: str = '', rate: typing.SupportsFloat | typing.SupportsIndex = 0.0, batch_size: typing.SupportsInt | typing.SupportsIndex = 500, dry_run: bool = False, again: bool = False, max_replays: typing.SupportsInt | typing.SupportsIndex = 3, parking_topic: str = '', keep_failure_headers: bool = False, since_ms: typing.SupportsInt | typing.SupportsIndex | None = None, until_ms: typing.SupportsInt | typing.SupportsIndex | None = None, key: typing.Any = None, header_name: str = '', header_value: typing.Any = None, error_type: str = '', original_topic: str = '', fingerprint: str = '', text: str = '', ids: collections.abc.Sequence[str] = [], progress: typing.Any = None) -> dict[str, typing.Any]:
        ...
    def resolve(self, ids: collections.abc.Sequence[str], note: str = '') -> int:
        ...
    def show(self, id: str) -> DeadLetter | None:
        ...
    def size(self) -> int:
        ...
    def stats(self, *, include_settled: bool = False, since_ms: typing.SupportsInt | typing.SupportsIndex | None = None, until_ms: typing.SupportsInt | typing.SupportsIndex | None = None, key: typing.Any = None, header_name: str = '', header_value: typing.Any = None, error_type: str = '', original_topic: str = '', fingerprint: str = '', text: str = '', progress: typing.Any = None) -> tuple[int, list[DeadLetterGroup]]:
        ...
    def truncate(self, partition: typing.SupportsInt | typing.SupportsIndex, before_offset: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
def dead_letter_fingerprint(error_type: str, message: str, stack: str) -> str:
    ...
def decode_dead_letter(record: Message) -> DeadLetter:
    """
    Decodes any known dead-letter header convention.
    """
def default_log_level() -> int:
    ...
def is_valid_table_name(name: str) -> bool:
    ...
def new_event_id() -> str:
    """
    A fresh random UUID (version 4) as text.
    """
def normalise_error_message(message: str) -> str:
    ...
def open_store(url: str) -> IdempotencyStore:
    ...
def outbox_insert_statement(dialect: str, table: str, payload: str = 'bytea') -> str:
    ...
def outbox_row(event: Event, aggregate_type: str, aggregate_id: str, topic: str | None = None) -> tuple[str, str, str, str, typing.Any, str, typing.Any]:
    """
    The outbox row for an event: (id, aggregatetype, aggregateid, type, payload, headers, topic).
    """
def parse_additional_placement(spec: str) -> list[tuple[str, str]]:
    """
    Debezium's table.fields.additional.placement ('column:header[:alias],...') as (column, header) pairs.
    """
def parse_broker_url(url: str) -> BrokerUrl:
    """
    Parses kafka://host:port[,host:port], embedded://[name] or redis://host:port/db; raises ConfigurationError saying what is accepted.
    """
def redact_secrets(text: str, url: str) -> str:
    """
    text with every password that url holds replaced by '***'.
    """
def redacted_url(url: str) -> str:
    """
    The URL with its password(s) replaced by '***' (user, hosts, path kept).
    """
def set_default_log_level(level: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    librdkafka lines at or below this syslog level go to stderr (-1 = none).
    """
ERROR_KINDS: tuple[str, ...]
