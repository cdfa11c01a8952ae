"""Issue 23, item 4: a password in a broker or database URL is never shown back — not in a
repr, an error, a log line on stderr, nor in the command line's output (text or --json).

Every path runs with the known password PASSWORD and must not show it; each also checks that
the user and host are still shown, with ``***`` in the password's place (one rule,
``postroom.redacted_url``, defined once in the C++ core)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import postroom
from postroom import _core, errors
from postroom.cli import main as cli
from postroom.stores import PostgresStore, RedisStore

from .conftest import require_env, unique

PASSWORD = "s3cr3t-P4ss"


def with_password(url: str, user: str) -> str:
    """``scheme://host...`` as ``scheme://user:PASSWORD@host...`` (any user in it replaced)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{PASSWORD}@{rest.rsplit('@', 1)[-1]}"


def assert_hidden(text: str, shown: str | None = None) -> None:
    assert PASSWORD not in text, text
    assert "s3cr3t" not in text and "P4ss" not in text, text  # no piece of it either
    if shown is not None:  # (rich wraps long lines)
        assert shown in text or shown in " ".join(text.split()), text


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The command line as a user runs it; stdout and stderr together."""
    return subprocess.run([sys.executable, "-m", "postroom", *args], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "POSTROOM_LOG_LEVEL": "7"})  # every log line


@pytest.fixture
def quiet_logs(capfd: pytest.CaptureFixture[str],
               caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever postroom, librdkafka, hiredis or libpq write to stderr/stdout or Python
    logging meanwhile must not hold the password either."""
    caplog.set_level(logging.DEBUG)
    yield
    out, err = capfd.readouterr()
    assert_hidden(out + err + caplog.text)


# -- the rule ------------------------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize(("url", "expected"), [
    ("redis://bob:s3cr3t-P4ss@host:6379/0", "redis://bob:***@host:6379/0"),
    ("redis://:s3cr3t-P4ss@host:6379/0", "redis://:***@host:6379/0"),
    ("kafka://alice:s3cr3t-P4ss@h1:9092,h2", "kafka://alice:***@h1:9092,h2"),
    ("postgresql://u:s3cr3t-P4ss@db:5432/shop", "postgresql://u:***@db:5432/shop"),
    ("postgresql://db/shop?password=s3cr3t-P4ss&sslmode=require",
     "postgresql://db/shop?password=***&sslmode=require"),
    ("host=db password=s3cr3t-P4ss dbname=shop", "host=db password=*** dbname=shop"),
    ("redis://bob:s3@cr:3t/P4ss@host:6379/0", "redis://bob:***@host:6379/0"),
    ("kafka:alice:s3cr3t-P4ss@host", "kafka:***@host"),
    ("kafka://127.0.0.1:19092", "kafka://127.0.0.1:19092"),
    ("postgresql://postgres@127.0.0.1:15432/postroom",
     "postgresql://postgres@127.0.0.1:15432/postroom"),
])
def test_redacted_url_hides_the_password_and_keeps_the_rest(url: str, expected: str) -> None:
    assert postroom.redacted_url(url) == expected
    assert postroom.redacted_url is _core.redacted_url  # one rule, the core's


# Passwords of any printable characters, '@', ':' and '/' included ('=' and whitespace start
# a key=value pair, which the rule hides too, so the exact form below would differ).
passwords = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                  blacklist_characters="="), min_size=1, max_size=40)
users = st.text(st.characters(min_codepoint=0x61, max_codepoint=0x7A), max_size=10)
hosts = st.sampled_from(["h", "127.0.0.1", "db.example.com", "[::1]", "h1:9092,h2:9093"])
tails = st.sampled_from(["", ":6379", ":6379/0", ":5432/shop", ":5432/shop?sslmode=require"])


@pytest.mark.unit
@given(scheme=st.sampled_from(["kafka", "redis", "postgresql", "postgres"]), user=users,
       password=passwords, host=hosts, tail=tails)
def test_property_a_random_password_never_survives_and_user_and_host_are_kept(
        scheme: str, user: str, password: str, host: str, tail: str) -> None:
    url = f"{scheme}://{user}:{password}@{host}{tail}"
    assert postroom.redacted_url(url) == f"{scheme}://{user}:***@{host}{tail}"
    # A library quoting the password (as libpq does for a URL it cannot parse) is scrubbed.
    assert _core.redact_secrets(f"<<{password}>>", url) == "<<***>>" or (
        "<" in password or ">" in password)


# ('@' after the port makes the userinfo rule hide from there on: more than the password,
# never less; the exact form below would differ.)
@pytest.mark.unit
@given(password=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                      blacklist_characters="&=@"), min_size=1, max_size=40),
       key=st.sampled_from(["password", "sslpassword"]))
def test_property_a_random_query_password_never_survives(password: str, key: str) -> None:
    url = f"postgresql://u@db:5432/shop?sslmode=require&{key}={password}&connect_timeout=2"
    assert postroom.redacted_url(url) == (
        f"postgresql://u@db:5432/shop?sslmode=require&{key}=***&connect_timeout=2")


# -- errors, in Python and from the core -----------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize(("url", "shown"), [
    ("kafka://alice:s3cr3t-P4ss@127.0.0.1:1", "kafka://alice:***@127.0.0.1:1"),
    ("kafka://alice:s3cr3t/P4ss@127.0.0.1:1", "kafka://alice:***@127.0.0.1:1"),
    ("embedded://bob:s3cr3t-P4ss@dev", "embedded://bob:***@dev"),
    ("redis://bob:s3cr3t-P4ss@127.0.0.1:abc/0", "redis://bob:***@127.0.0.1:abc/0"),
    ("redis://bob:s3cr3t/P4ss@127.0.0.1:6379/0", "redis://bob:***@127.0.0.1:6379/0"),
    ("redis://bob:s3cr3t-P4ss@127.0.0.1:6379/x", "redis://bob:***@127.0.0.1:6379/x"),
    ("mqtt://bob:s3cr3t-P4ss@127.0.0.1:1883", "mqtt://bob:***@127.0.0.1:1883"),
    ("bob:s3cr3t-P4ss@127.0.0.1:6379", "bob:***@127.0.0.1:6379"),
])
def test_a_malformed_broker_url_error_hides_the_password(url: str, shown: str,
                                                         quiet_logs: None) -> None:
    with pytest.raises(errors.ConfigurationError) as info:
        postroom.connect(url)
    assert_hidden(str(info.value), shown)
    assert_hidden(repr(info.value))


@pytest.mark.unit
def test_a_kafka_url_with_credentials_says_to_use_sasl_properties() -> None:
    with pytest.raises(errors.ConfigurationError, match="sasl.password") as info:
        postroom.connect("kafka://alice:s3cr3t-P4ss@127.0.0.1:19092")
    assert_hidden(str(info.value), "kafka://alice:***@127.0.0.1:19092")


@pytest.mark.unit
@pytest.mark.parametrize("open_", [postroom.stores.open_store,
                                   lambda url: postroom.Outbox(url, "embedded://")])
def test_an_unsupported_database_url_error_hides_the_password(
        open_: Callable[[str], Any], quiet_logs: None) -> None:
    with pytest.raises(errors.ConfigurationError) as info:
        open_("mysql://u:s3cr3t-P4ss@127.0.0.1:1/x")
    assert_hidden(str(info.value), "mysql://u:***@127.0.0.1:1/x")


# -- Redis: reprs of every client, and the errors of a refused password ---------------------

@pytest.fixture
def redis_with_password() -> str:
    return with_password(require_env("POSTROOM_REDIS_URL"), "bob")


@pytest.mark.redis
def test_reprs_of_a_redis_broker_and_its_clients_hide_the_password(
        redis_with_password: str, quiet_logs: None) -> None:
    shown = postroom.redacted_url(redis_with_password)
    assert shown.startswith("redis://bob:***@127.0.0.1:")
    broker = postroom.connect(redis_with_password)
    assert broker.url == redis_with_password  # kept as given, for connecting
    assert broker.redacted_url == shown
    # These connect on first use (the test server has no password and refuses AUTH then).
    objects: list[Any] = [broker, broker.producer(), broker.consumer("redaction"),
                          broker.dead_letters("orders.dlq")]
    # A processor connects at once: one made on an embedded broker shows this broker.
    processor = postroom.Processor(postroom.connect(f"embedded://{unique('redact')}"),
                                   name="redaction", topics="orders",
                                   handler=lambda event, context: None,
                                   store=postroom.stores.MemoryStore())
    processor.broker = broker
    objects.append(processor)
    for obj in objects:
        assert_hidden(repr(obj), shown)
        assert_hidden(str(obj), shown)


@pytest.mark.redis
def test_a_refused_redis_password_is_an_error_that_does_not_show_it(
        redis_with_password: str, quiet_logs: None) -> None:
    broker = postroom.connect(redis_with_password)
    for call in (broker.topics, broker.ping, lambda: RedisStore(redis_with_password),
                 lambda: broker.consumer("redaction", "orders"),
                 lambda: broker.producer().send(b"x", topic="orders")):
        with pytest.raises(errors.PostroomError) as info:
            call()
        assert_hidden(str(info.value))


@pytest.mark.redis
def test_an_unreachable_redis_error_does_not_show_the_password(quiet_logs: None) -> None:
    broker = postroom.connect(f"redis://bob:{PASSWORD}@127.0.0.1:1/0", timeout=2.0)
    with pytest.raises(errors.TransportError) as info:
        broker.topics()
    assert_hidden(str(info.value), "127.0.0.1:1")


# -- PostgreSQL: stores and the outbox ------------------------------------------------------

@pytest.fixture
def pg_with_password() -> str:
    """The test database's URL with a password: the server trusts local connections, so it
    connects (and the password must still be shown nowhere)."""
    return with_password(require_env("POSTROOM_PG_URL"), "postgres")


@pytest.mark.postgres
def test_reprs_of_postgres_stores_and_outboxes_hide_the_password(
        pg_with_password: str, redis_with_password: str, quiet_logs: None) -> None:
    shown = postroom.redacted_url(pg_with_password)
    store = PostgresStore(pg_with_password, table=unique("redact").replace("-", "_"))
    with postroom.Outbox(pg_with_password, "embedded://", table=unique("redact").replace(
            "-", "_")) as outbox:
        for obj in (store, outbox):
            assert_hidden(repr(obj), shown)
        assert_hidden(repr(outbox.status()))
    try:
        broker = postroom.connect(redis_with_password)
        with postroom.Outbox(pg_with_password, broker,
                             table=unique("redact").replace("-", "_")) as outbox:
            assert_hidden(repr(outbox), "redis://bob:***@")
    except errors.PostroomError as e:
        assert_hidden(str(e))


@pytest.mark.postgres
@pytest.mark.parametrize("url", [
    f"postgresql://u:{PASSWORD}@127.0.0.1:1/x",                        # unreachable
    f"postgresql://u@127.0.0.1:1/x?password={PASSWORD}",               # ... password as a param
    f"postgresql://u:{PASSWORD}%zz@127.0.0.1:1/x",                     # libpq cannot decode it
    f"postgresql://u@127.0.0.1:1/x?password={PASSWORD}&nonsense=1",    # libpq refuses an option
    f"host=127.0.0.1 port=1 dbname=x password='{PASSWORD}'",           # a conninfo string
])
def test_postgres_connection_errors_do_not_show_the_password(url: str,
                                                             quiet_logs: None) -> None:
    openers: list[Callable[[], Any]] = [lambda: PostgresStore(url)]
    if url.startswith("postgresql://"):
        openers += [lambda: postroom.stores.open_store(url),
                    lambda: postroom.Outbox(url, "embedded://")]
    for open_ in openers:
        with pytest.raises(errors.PostroomError) as info:
            open_()
        assert_hidden(str(info.value))


# -- the command line -----------------------------------------------------------------------

@pytest.mark.kafka
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
@pytest.mark.parametrize("command", [["topics"], ["lag", "g", "t"], ["dlq", "stats", "t.dlq"],
                                     ["demo"], ["tail", "t"]])
def test_cli_with_a_kafka_password_shows_it_nowhere(command: list[str],
                                                    json_flag: list[str]) -> None:
    url = with_password(require_env("POSTROOM_KAFKA_URL"), "alice")
    result = run_cli(*command, "--broker", url, *json_flag)
    assert result.returncode == 1
    assert_hidden(result.stdout + result.stderr, "kafka://alice:***@127.0.0.1:")


@pytest.mark.redis
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
@pytest.mark.parametrize("command", [["topics"], ["demo"], ["dlq", "list", "t.dlq"]])
def test_cli_with_a_redis_password_shows_it_nowhere(command: list[str], json_flag: list[str],
                                                    redis_with_password: str) -> None:
    result = run_cli(*command, "--broker", redis_with_password, *json_flag)
    assert result.returncode == 1
    assert_hidden(result.stdout + result.stderr, "check the password in the URL")


@pytest.mark.postgres
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_cli_outbox_with_a_database_password_shows_it_nowhere(
        json_flag: list[str], pg_with_password: str) -> None:
    unreachable = f"postgresql://u:{PASSWORD}@127.0.0.1:1/x"
    for command in (["status"], ["requeue"], ["relay", "--idle-exit", "0.2"]):
        result = run_cli("outbox", *command, "--db", unreachable, *json_flag)
        assert result.returncode == 1, result.stderr
        assert_hidden(result.stdout + result.stderr, "postgresql://u:***@127.0.0.1:1/x")
    # Working: the relay's "relaying ... from DB to BROKER" line and the status.
    table = unique("redact").replace("-", "_")
    for command in (["relay", "--idle-exit", "0.2", "--broker", "embedded://"], ["status"]):
        result = run_cli("outbox", *command, "--db", pg_with_password, "--table", table,
                         *json_flag)
        assert result.returncode == 0, result.stderr
        assert_hidden(result.stdout + result.stderr)
    result = run_cli("outbox", "relay", "--idle-exit", "0.2", "--broker", "embedded://",
                     "--db", pg_with_password, "--table", table)
    assert_hidden(result.stderr, "from postgresql://postgres:***@127.0.0.1:")


@pytest.mark.unit
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_cli_output_that_names_the_broker_hides_its_password(
        json_flag: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """demo and topics print the broker they ran on: on success too. No service here takes a
    password, so the command's connect() lands on an embedded broker."""
    name = unique("redact")
    real_connect = postroom.connect
    monkeypatch.setattr("postroom.cli.connect", lambda url: real_connect(f"embedded://{name}"))
    url = f"redis://bob:{PASSWORD}@127.0.0.1:16379/0"
    runner = CliRunner()
    for command in (["demo", "--events", "5"], ["topics"]):
        result = runner.invoke(cli, [*command, "--broker", url, *json_flag])
        assert result.exit_code == 0, result.output
        assert_hidden(result.output)
        if command[0] == "demo" and json_flag:
            assert json.loads(result.output)["summary"]["broker"] == (
                "redis://bob:***@127.0.0.1:16379/0")
        elif not json_flag:
            assert "redis://bob:***@127.0.0.1:16379/0" in result.output.replace("\n", "")
    result = runner.invoke(cli, ["topics", "--broker", url, "delete", "nope"], input="n\n")
    assert_hidden(result.output, "redis://bob:***@")
    result = runner.invoke(cli, ["tail", "no-such-topic", "--broker", url])
    assert result.exit_code != 0
    assert_hidden(result.output, "redis://bob:***@")
