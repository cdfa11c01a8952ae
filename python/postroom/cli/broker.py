"""``postroom broker``: serve the embedded broker to other processes (see
``postroom.embedded_server``)."""

from __future__ import annotations

import click

from ..embedded_server import serve
from .common import out


@click.command("broker")
@click.option("--name", default="", help="Name of the embedded broker (embedded://NAME).")
@click.option("--port", type=int, default=None,
              help="Also accept bootstrap connections on this local port.")
@click.option("--topic", "topics_", multiple=True, metavar="NAME[:PARTITIONS]",
              help="Create a topic at start (repeatable).")
def serve_broker(name: str, port: int | None, topics_: tuple[str, ...]) -> None:
    """Serve the embedded (in-memory, development-only) broker to other processes."""
    topics = []
    for spec in topics_:
        topic, _, parts = spec.partition(":")
        topics.append((topic, int(parts or 3)))
    serve(name, port=port, topics=topics, announce=out.print)
