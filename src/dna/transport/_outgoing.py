"""The slow path of a connection's flush: frames encoded one by one, batches of
one-way messages cut to fit, and what cannot go refused where its sender hears it.

Private to ``dna.transport``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .._core import encode_frame
from ..errors import InterfaceError, TooLarge
from ._auth import RECORD_HEADER
from ._wire import ERROR, MESSAGE, REPLY, REQUEST, error_to_wire, printable

if TYPE_CHECKING:
    from ._conn import Connection

__all__ = ["encode_one_by_one"]

log = logging.getLogger("dna.transport")


def encode_one_by_one(conn: Connection, out: list[Any]) -> list[bytes]:
    """Encode each frame alone and refuse, locally, the ones that cannot go; returns
    the record payloads carrying the rest (each at most the frame limit + 4 bytes)."""
    records: list[bytes] = []
    parts: list[bytes] = []
    size = 0
    limit = conn.owner._max_frame_size
    todo = list(reversed(out))
    while todo:
        frame = todo.pop()
        try:
            data = encode_frame(frame)
            if len(data) - 4 > limit:
                halves = _halves(conn, frame)
                if halves is not None:  # a batch of one-way messages: send it in parts
                    todo.extend(reversed(halves))
                    continue
                raise TooLarge(f"frame of {len(data) - 4} bytes is over the {limit} limit")
        except Exception as e:
            data = _refuse(conn, frame, e)
        if parts and size + len(data) > limit + RECORD_HEADER:
            records.append(b"".join(parts))
            parts, size = [], 0
        parts.append(data)
        size += len(data)
    if size:
        records.append(b"".join(parts))
    return records


def _halves(conn: Connection, frame: list[Any]) -> list[list[Any]] | None:
    """A weighted MESSAGE frame split in two by the owner's ``split`` (order kept,
    weights summing to the whole), or None when it cannot be split."""
    split = conn.owner._split
    if split is None or frame[0] != MESSAGE or len(frame) != 3 or frame[2] < 2:
        return None
    parts = split(frame[1], frame[2])
    if parts is None:
        return None
    return [[MESSAGE, msg, w] if w > 1 else [MESSAGE, msg] for msg, w in parts]


def _refuse(conn: Connection, frame: list[Any], exc: Exception) -> bytes:
    """What goes instead of ``frame``: a REQUEST fails its caller, a reply becomes an
    error reply, a one-way message goes to the owner's ``on_refused`` (or the log)."""
    kind = frame[0]
    reason = f"cannot send to {printable(conn.peer_id or conn.address or '')}: {exc}"
    error: Exception = (TooLarge if isinstance(exc, TooLarge) else InterfaceError)(reason)
    if kind == REQUEST:
        fut = conn.pending.pop(frame[1], None)
        if fut is not None and not fut.done():
            fut.set_exception(error)
    elif kind in (REPLY, ERROR):
        refusal: bytes = encode_frame(error_to_wire(frame[1], type(error)(f"reply refused: {exc}")))
        return refusal
    else:
        log.error("one-way message dropped: %s", reason)
    return b""

