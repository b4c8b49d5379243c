"""Catalog cursors of the stores that list actors in name order (SQLite, memory).

A cursor is the last listed name ``(type_name, namespace, key)``, as JSON in
URL-safe base64 (one shell word):
the next page starts strictly after it, so a walk never repeats or skips an
actor that exists throughout (names are unique and ordered). Opaque to callers.
"""

from __future__ import annotations

import base64
import binascii
import json

from .base import ActorId

__all__ = ["decode", "encode"]

_TAG = "n1."  # format of a name cursor; another store's cursor never parses as one


def encode(actor: ActorId) -> str:
    text = json.dumps([actor.type_name, actor.namespace, actor.key], ensure_ascii=False)
    return _TAG + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(cursor: str) -> tuple[str, str, str]:
    """``(type_name, namespace, key)`` of a cursor made by ``encode``, else ``ValueError``."""
    if not isinstance(cursor, str) or not cursor.startswith(_TAG):
        raise ValueError(f"not a catalog cursor of this store: {cursor!r:.80}")
    try:
        body = cursor[len(_TAG):]
        got = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, binascii.Error):
        got = None
    if not (isinstance(got, list) and len(got) == 3 and all(isinstance(x, str) for x in got)):
        raise ValueError(f"not a catalog cursor of this store: {cursor!r:.80}")
    return got[0], got[1], got[2]
