"""postroom's exception hierarchy.

Every error raised by postroom derives from :class:`PostroomError` and carries
``retriable`` (True, False, or None when unknown). Classes also derive from the
matching builtin, so ``except TimeoutError`` or ``except ValueError`` work too.
"""

from __future__ import annotations


class PostroomError(Exception):
    """Base class of every postroom error."""

    retriable: bool | None = None
    code: int = 0


class ConfigurationError(PostroomError, ValueError):
    """Bad URL, option or setting: fix the configuration."""

    retriable = False


class TransportError(PostroomError, ConnectionError):
    """The broker or the network failed or refused the request."""


class BrokerTimeoutError(TransportError, TimeoutError):
    """A bounded wait for the broker ran out. Retrying may succeed."""

    retriable = True


class FatalClientError(PostroomError):
    """The client cannot be used any more: close it and create a new one."""

    retriable = False


class StorageError(PostroomError):
    """A database failed (serialization conflict, commit in doubt, ...)."""


class CodecError(PostroomError, ValueError):
    """An event or message is malformed. ``attribute`` names the bad attribute."""

    retriable = False
    attribute: str = ""


class UsageError(PostroomError, RuntimeError):
    """The API was used the wrong way (closed client, unknown topic, ...)."""

    retriable = False


class NonRetryableError(PostroomError):
    """Raise from a handler to send the event straight to the dead-letter topic: retrying
    cannot help (invalid content, a business rule that will never pass, ...)."""

    retriable = False


__all__ = [
    "NonRetryableError",
    "PostroomError",
    "ConfigurationError",
    "TransportError",
    "BrokerTimeoutError",
    "FatalClientError",
    "StorageError",
    "CodecError",
    "UsageError",
]
