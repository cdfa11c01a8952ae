"""What every command shares: the --broker and --json options, the output consoles, error
reporting and JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from .._core import redact_secrets
from ..broker import BrokerBase
from ..errors import PostroomError

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


def connect(url: str) -> BrokerBase:
    """The commands' door to a broker: ``postroom.cli.connect``, looked up at each call so
    that a test may replace it."""
    from .. import cli

    return cli.connect(url)


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


def text(value: bytes | None) -> str | None:
    """Bytes as text: UTF-8 if they are, else 0x and hex."""
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return "0x" + value.hex()
