"""A Hypothesis test of the retry / dead-letter state machine against a model: whatever the
failure pattern of each event, it ends in exactly one of {applied once, dead-lettered},
after exactly the attempts the policy allows."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import postroom
from postroom import errors

pytestmark = pytest.mark.unit

MAX_ATTEMPTS = 3
_brokers = itertools.count()

# Per event: how many times the handler fails before succeeding (a number), or a failure
# that is never retried ("permanent"), or a failure on every attempt ("always").
behaviour = st.one_of(st.integers(min_value=0, max_value=4), st.just("permanent"),
                      st.just("always"))


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(plans=st.lists(behaviour, min_size=1, max_size=12))
def test_every_event_is_applied_once_or_dead_lettered(plans: list[int | str]) -> None:
    broker = postroom.connect(f"embedded://model-{next(_brokers)}")
    broker.create_topic("in", 2)
    broker.create_topic("in.dlq", 1)
    ids = [f"e{i}" for i in range(len(plans))]
    plan = dict(zip(ids, plans))
    with broker.producer() as producer:
        producer.send_batch([(f"k{i % 3}", postroom.Event(type="t", source="/m", id=i_))
                             for i, i_ in enumerate(ids)], topic="in")

    calls: dict[str, int] = {}
    applied: dict[str, int] = {}

    def handler(event: postroom.Event, context: postroom.HandlerContext) -> None:
        calls[event.id] = calls.get(event.id, 0) + 1
        p = plan[event.id]
        if p == "permanent":
            raise errors.NonRetryableError("never")
        if p == "always" or calls[event.id] <= p:
            raise RuntimeError("fails")
        applied[event.id] = applied.get(event.id, 0) + 1

    policy = postroom.RetryPolicy(max_attempts=MAX_ATTEMPTS, initial_delay=0.001,
                                  max_delay=0.002)
    with postroom.Processor(broker, name="model", topics="in", handler=handler,
                            retry=policy) as processor:
        deadline = time.monotonic() + 60
        while processor.counters.finished < len(ids) and time.monotonic() < deadline:
            processor.run_once(0.1)
        counters = processor.counters
    with broker.consumer("dlq-reader", "in.dlq") as consumer:
        dead = [m.event().id for m in consumer.messages(idle_timeout=1.0)]

    for event_id, p in plan.items():
        succeeds = isinstance(p, int) and p < MAX_ATTEMPTS
        expected_calls = (1 if p == "permanent" else
                          MAX_ATTEMPTS if not succeeds else int(p) + 1)
        assert calls[event_id] == expected_calls, (event_id, p)
        assert applied.get(event_id, 0) == (1 if succeeds else 0), (event_id, p)
        assert dead.count(event_id) == (0 if succeeds else 1), (event_id, p)
    assert counters.processed + counters.dead_lettered == len(ids)
