"""What the transport's frames carry after the handshake, and how errors cross the wire.

Every frame is a msgpack array whose first item is its kind:

- ``[REQUEST, id, seconds_left, msg]``: a call; the receiver's deadline is
  its own monotonic clock plus ``seconds_left`` (wall clocks are never compared)
- ``[REPLY, id, value]``
- ``[ERROR, id, class_name, message, extra]``: the handler raised
- ``[MESSAGE, msg]`` or ``[MESSAGE, msg, weight]``: one-way (``weight`` items, default 1)
- ``[PING]`` / ``[PONG]``: keepalive
- ``[CREDIT, n]``: the sender may send ``n`` more items of REQUEST/MESSAGE

Flow control: a side may send REQUEST and MESSAGE frames while its credit
is positive (each costs its weight; a REQUEST weighs 1). Credit starts at
``INITIAL_CREDIT``; the receiver grants more with CREDIT frames as the
items are released. REPLY, ERROR, PING, PONG and CREDIT are never
counted, so an answer is never held behind requests.
"""

from __future__ import annotations

import ipaddress
import reprlib
from typing import Any

from .. import errors
from ..errors import ActorError, DNAError, NotOwner

__all__ = [
    "CREDIT",
    "ERROR",
    "INITIAL_CREDIT",
    "MESSAGE",
    "PING",
    "PONG",
    "REPLY",
    "REQUEST",
    "error_from_wire",
    "error_to_wire",
    "format_address",
    "is_loopback_literal",
    "parse_address",
    "printable",
    "summary",
]

REQUEST = 0
REPLY = 1
ERROR = 2
MESSAGE = 3
PING = 4
PONG = 5
CREDIT = 6

INITIAL_CREDIT = 64  # items either side may send before the first CREDIT arrives

# The only classes an ERROR frame may name: DNA's own, looked up by name, never imported.
_KNOWN: dict[str, type[DNAError]] = {
    name: cls
    for name in errors.__all__
    if isinstance(cls := getattr(errors, name), type) and issubclass(cls, DNAError)
}


def error_to_wire(rid: int, exc: BaseException) -> list[object]:
    """The ERROR frame answering request ``rid`` that raised ``exc``."""
    if isinstance(exc, ActorError):
        return [ERROR, rid, "ActorError", exc.remote_message, exc.remote_type]
    name = type(exc).__name__
    if _KNOWN.get(name) is type(exc):
        extra = exc.owner if isinstance(exc, NotOwner) else None
        return [ERROR, rid, name, str(exc), extra]
    return [ERROR, rid, "ActorError", str(exc), name]


def error_from_wire(name: object, message: object, extra: object) -> DNAError:
    """The exception a caller sees for an ERROR frame (untrusted input)."""
    msg = message if isinstance(message, str) else repr(message)
    if name == "ActorError":
        return ActorError(extra if isinstance(extra, str) else "Exception", msg)
    cls = _KNOWN.get(name) if isinstance(name, str) else None
    if cls is None:
        return ActorError(name if isinstance(name, str) else "Exception", msg)
    if cls is NotOwner:
        return NotOwner(msg, extra if isinstance(extra, str) else None)
    try:
        return cls(msg)
    except TypeError:  # a class whose constructor takes something else
        return ActorError(cls.__name__, msg)


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` to ``(host, port)``; ValueError when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"peer address must be 'host:port', got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback_literal(host: str) -> bool | None:
    """True/False for an IP literal or "localhost"; None for a name that must be resolved."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return None if host else False


_short = reprlib.Repr()  # bounded depth and length: a hostile frame cannot recurse or flood
_short.maxlevel, _short.maxstring, _short.maxother = 4, 40, 40


def printable(text: str) -> str:
    """``text`` safe for one log line: control characters (newline, ESC...) escaped."""
    return text if text.isprintable() else repr(text)[1:-1]


def summary(frame: Any) -> str:
    """A short description of an untrusted frame for an error message."""
    try:
        return _short.repr(frame)[:80]
    except Exception:  # a RecursionError, MemoryError... never let describing fail
        return f"<{type(frame).__name__}>"
