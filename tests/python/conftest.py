"""Shared fixtures. Tiers are pytest markers (see pyproject.toml); the tiers that need a
real service fail (never skip) when its URL is missing: scripts/services.sh start; eval
"$(scripts/services.sh env)"."""

from __future__ import annotations

import itertools
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import postroom

_counter = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def require_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: start the services with scripts/services.sh start "
                    f"and export their URLs (eval \"$(scripts/services.sh env)\")")
    return value


SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"


def service(action: str, name: str) -> None:
    """``scripts/services.sh <action> <name>``: kill (SIGKILL), start or restart a service
    (kafka, redis, postgres); start and restart wait until it answers."""
    subprocess.run([str(SERVICES), action, name], check=True, capture_output=True, timeout=180)


def kill_then_start(name: str, down_for: float) -> None:
    """Kills the service with SIGKILL, leaves it down for ``down_for`` seconds, starts it."""
    service("kill", name)
    time.sleep(down_for)
    service("start", name)


@pytest.fixture
def kafka_url() -> str:
    return require_env("POSTROOM_KAFKA_URL")


@pytest.fixture
def embedded() -> postroom.Broker:
    """A fresh, isolated embedded broker."""
    return postroom.connect(f"embedded://pytest-{next(_counter)}-{uuid.uuid4().hex[:6]}")


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def broker(request: pytest.FixtureRequest) -> postroom.Broker:
    """The same tests against the embedded broker and the real one (contract)."""
    if request.param == "embedded":
        return postroom.connect(f"embedded://pytest-{next(_counter)}-{uuid.uuid4().hex[:6]}")
    return postroom.connect(require_env("POSTROOM_KAFKA_URL"))


@pytest.fixture
def topic(broker: postroom.Broker) -> Iterator[str]:
    name = unique("pytest")
    broker.create_topic(name, 3)
    yield name
    if not broker.is_embedded:
        broker.delete_topic(name)


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka),
                        pytest.param("redis", marks=pytest.mark.redis)])
def any_broker(request: pytest.FixtureRequest) -> postroom.Broker:
    """Every transport: a fresh embedded broker, the real Kafka broker and Redis Streams."""
    if request.param == "embedded":
        return postroom.connect(f"embedded://pytest-{next(_counter)}-{uuid.uuid4().hex[:6]}")
    if request.param == "kafka":
        return postroom.connect(require_env("POSTROOM_KAFKA_URL"))
    return postroom.connect(require_env("POSTROOM_REDIS_URL"))
