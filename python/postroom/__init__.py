"""postroom: idempotent consume, transactional outbox and dead-letter tooling for Kafka
and Redis Streams, over a C++ core.

    import postroom
    broker = postroom.connect("embedded://")        # or "kafka://host:9092"
    broker.create_topic("orders", partitions=3)
    with broker.producer() as producer:
        producer.send(postroom.Event(type="order.created", source="/shop", data={"id": 1}),
                      topic="orders", key="customer-1")
    with broker.consumer("billing", topics="orders") as consumer:
        for message in consumer.messages(idle_timeout=1.0):
            print(message.event())
            consumer.mark_done(message)
"""

from __future__ import annotations

from . import errors, stores
from ._core import (
    BatchContext,
    BatchResult,
    DeliveryReport,
    Event,
    HandlerContext,
    Message,
    TopicInfo,
    new_event_id,
    redacted_url,
)
from .broker import connect
from .kafka import Broker, Consumer, Producer
from .outbox import Outbox, OutboxStatus
from .processor import FloodGuard, Processor, ProcessorCounters, RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "BatchContext",
    "BatchResult",
    "Broker",
    "Consumer",
    "DeliveryReport",
    "HandlerContext",
    "Event",
    "FloodGuard",
    "Message",
    "Outbox",
    "OutboxStatus",
    "Processor",
    "ProcessorCounters",
    "Producer",
    "RetryPolicy",
    "TopicInfo",
    "connect",
    "errors",
    "new_event_id",
    "redacted_url",
    "stores",
]
