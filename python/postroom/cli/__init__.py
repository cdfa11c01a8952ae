"""The postroom command line: ``postroom --help``.

Every command takes ``--broker URL`` (default: $POSTROOM_BROKER or embedded://); every read
command takes ``--json``. Exit code 0 only on success; errors say what to do.

``main`` is the click group; each command group lives in its own module (``demo``, ``topics``,
``tail``, ``dlq``, ``lag``, ``outbox``, ``broker``), sharing the options and output helpers of
``common``.
"""

from __future__ import annotations

import os

import click

from .. import __version__
from .._core import set_default_log_level
from ..broker import connect  # the commands' door to a broker (see common.connect)
from . import broker, demo, dlq, lag, outbox, tail, topics


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="postroom")
def main() -> None:
    """postroom: idempotent consume, transactional outbox and dead-letter tooling."""
    # Failures reach the user as one clear error each; librdkafka's own connection chatter
    # only when asked for (POSTROOM_LOG_LEVEL=warning).
    if "POSTROOM_LOG_LEVEL" not in os.environ:
        set_default_log_level(2)


for command in (demo.demo, topics.topics, tail.tail, dlq.dlq, lag.lag, broker.serve_broker,
                outbox.outbox):
    main.add_command(command)

__all__ = ["connect", "main"]
