"""Every exception DNA raises, in three families (as asyncpg does).

- ``ActorError``: the remote actor's handler raised; carries its type and message.
- ``InterfaceError`` (and ``TypeError``/``ValueError`` where they fit): API misuse.
- ``InternalError`` > ``ProtocolError``, ``StoreError``: faults of the wire or the database.

Overload, timeout and ownership have classes of their own so callers can retry them.
"""

from __future__ import annotations

__all__ = [
    "ActorError",
    "ActorRedefinedWarning",
    "CallCycle",
    "CommitFailed",
    "CommitUnknown",
    "DNAError",
    "InterfaceError",
    "InternalError",
    "NotOwner",
    "Overloaded",
    "PeerUnavailable",
    "ProtocolError",
    "Retryable",
    "StaleEpoch",
    "StoreError",
    "StoreUnavailable",
    "Timeout",
    "TooLarge",
    "UnknownHandler",
]


class DNAError(Exception):
    """Base class of every error DNA raises on purpose."""


class Retryable(DNAError):
    """Mixin-style base: the same request may succeed if sent again later."""


class ActorError(DNAError):
    """The handler raised. ``remote_type`` and ``remote_message`` describe its exception."""

    def __init__(self, remote_type: str, remote_message: str) -> None:
        super().__init__(f"{remote_type}: {remote_message}")
        self.remote_type = remote_type
        self.remote_message = remote_message

    def __reduce__(self) -> tuple[type[ActorError], tuple[str, str]]:
        return (type(self), (self.remote_type, self.remote_message))


class InterfaceError(DNAError):
    """The API was used wrongly (closed node, bad configuration, unknown actor type)."""


class UnknownHandler(InterfaceError, AttributeError):
    """The actor type has no handler of that name."""


class Timeout(Retryable):
    """A call's deadline passed before its reply arrived. The call may still have run."""


class Overloaded(Retryable):
    """The mailbox is full and the caller asked not to wait."""


class NotOwner(Retryable):
    """Another live node owns the actor; ``owner`` names it (None when unknown)."""

    def __init__(self, message: str, owner: str | None = None) -> None:
        super().__init__(message)
        self.owner = owner


class InternalError(DNAError):
    """A fault inside DNA, on the wire or in the database."""


class ProtocolError(InternalError):
    """Bytes on the wire are malformed, oversize or from an unauthenticated peer."""


class StoreError(InternalError):
    """The database refused or failed an operation."""


class StoreUnavailable(StoreError, Retryable):
    """The database cannot be reached (down, file removed, read-only)."""


class StaleEpoch(StoreError, Retryable):
    """A commit or release was fenced: a newer claim of the actor exists."""


class CommitFailed(StoreError, Retryable):
    """The batch holding this call's writes did not commit; nothing of it is visible."""


class CommitUnknown(StoreError, Retryable):
    """The store could not tell whether the batch holding this call's writes committed
    (a CQL write timeout, say). Its writes may be visible; the activation restarts
    from storage, so a retry sees whichever outcome happened."""


class CallCycle(InterfaceError):
    """A call would wait on itself (A calls A, or A -> B -> A): an actor handles one
    message at a time, so the cycle could only end in a timeout. Not retryable."""


class TooLarge(InterfaceError, ValueError):
    """A message, key or value is over a configured size limit (the frame cap, the
    store's value limit); nothing was sent or written. Not retryable."""


class PeerUnavailable(InternalError, Retryable):
    """The peer node cannot be reached, or its connection was lost with the call in flight.

    The call may or may not have run on the peer; sending it again may succeed.
    """


class ActorRedefinedWarning(RuntimeWarning):
    """An actor class was defined again under the same module and name (a notebook
    cell run twice, a reload): the new definition replaces the old one."""
