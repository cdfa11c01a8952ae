from __future__ import annotations

import pytest

import postroom
from postroom import errors

pytestmark = pytest.mark.unit


def test_hierarchy_matches_builtins() -> None:
    assert issubclass(errors.ConfigurationError, ValueError)
    assert issubclass(errors.CodecError, ValueError)
    assert issubclass(errors.TransportError, ConnectionError)
    assert issubclass(errors.BrokerTimeoutError, TimeoutError)
    assert issubclass(errors.BrokerTimeoutError, errors.TransportError)
    for cls in (errors.ConfigurationError, errors.TransportError, errors.FatalClientError,
                errors.StorageError, errors.CodecError, errors.UsageError):
        assert issubclass(cls, errors.PostroomError)


@pytest.mark.parametrize("url", ["localhost:9092", "http://x:1", "kafka://", "kafka://h:0",
                                 "kafka://h:abc", "embedded://bad name", "", "redis://h/x"])
def test_bad_urls_say_what_is_accepted(url: str) -> None:
    with pytest.raises(errors.ConfigurationError) as info:
        postroom.connect(url)
    assert "kafka://host:port" in str(info.value)
    assert info.value.retriable is False


def test_unreachable_broker_is_a_clear_connection_error() -> None:
    broker = postroom.connect("kafka://127.0.0.1:1", timeout=2.0)
    with pytest.raises(errors.TransportError) as info:
        broker.topics()
    assert "127.0.0.1:1" in str(info.value)
    assert "running" in str(info.value)
    assert info.value.retriable is True


def test_bad_client_property_names_the_key(embedded: postroom.Broker) -> None:
    with pytest.raises(errors.ConfigurationError, match="no.such.property"):
        embedded.producer(properties={"no.such.property": "1"})
    with pytest.raises(errors.ConfigurationError, match="enable.auto.commit"):
        embedded.consumer("g", properties={"enable.auto.commit": "true"})


def test_connect_parses_the_url_once_and_the_scheme_picks_the_transport() -> None:
    from postroom.kafka import Broker
    from postroom.redis import RedisBroker

    assert isinstance(postroom.connect("redis://127.0.0.1:1/0"), RedisBroker)
    kafka = postroom.connect("kafka://h1:9092,h2")
    assert isinstance(kafka, Broker)
    assert kafka.bootstrap_servers == "h1:9092,h2:9092"  # the default port filled in
    assert not kafka.is_embedded
    parsed = postroom._core.parse_broker_url("embedded://demo")
    assert (parsed.scheme, parsed.embedded_name) == ("embedded", "demo")
    assert Broker(parsed).is_embedded  # a parsed URL is taken as it is
    with pytest.raises(errors.ConfigurationError, match="RedisBroker"):
        Broker("redis://127.0.0.1:1/0")
    with pytest.raises(errors.ConfigurationError, match="redis://host:port/db"):
        RedisBroker("kafka://127.0.0.1:1")
