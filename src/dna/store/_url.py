"""``open_store``: one store from a URL-like string, for the command line, the
bench and tests (no if/elif chains on store kinds anywhere else).

Forms (``?name=value&...`` sets constructor options; keyword arguments to
``open_store`` win over the URL's):

- ``sqlite://PATH``: the SQLite file at PATH, everything after ``sqlite://``.
  ``sqlite:///abs/path/app.db`` is absolute (PATH starts with ``/``),
  ``sqlite://app.db`` and ``sqlite://data/app.db`` are relative to the current
  directory. Percent escapes are decoded (``%3F`` for a ``?`` in a name).
  Options: ``synchronous``, ``busy_timeout_ms``, ``commit`` (``apply`` or
  ``log``: the log-first path), ``log_max_rows``, ``apply_rows``,
  ``apply_idle_ms`` (a number or ``none``).
- ``cql://HOST[:PORT][,HOST[:PORT]...][/KEYSPACE]``: ScyllaDB or Cassandra,
  keyspace ``dna`` when none is named; ``[v6 address]:port`` works. Options:
  ``lease``, ``heartbeat_interval`` (a number or ``none``), ``dead_node_grace``,
  ``connect_timeout``, ``request_timeout``, ``resolve_timeout``, ``local_dc``,
  ``max_commit_bytes``, ``activation`` (``actor`` or ``slots``), ``slots``.
  Needs the ``[cql]`` extra (scylla-driver).
- ``memory://NAME``: the in-process store; every store opened with the same
  NAME shares one database while any of them exists. ``memory://``: a private one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from .base import Store

__all__ = ["open_store"]

_FORMS = "sqlite:///abs/path/app.db, sqlite://relative.db, cql://host:9042,host2/keyspace, memory://name"


def _none_or_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


# options a URL may set, per scheme, with the conversion of their text
_OPTIONS: dict[str, dict[str, Callable[[str], Any]]] = {
    "sqlite": {
        "synchronous": str,
        "busy_timeout_ms": int,
        "commit": str,
        "log_max_rows": int,
        "apply_rows": int,
        "apply_idle_ms": _none_or_float,
    },
    "cql": {
        "lease": float,
        "heartbeat_interval": _none_or_float,
        "dead_node_grace": float,
        "connect_timeout": float,
        "request_timeout": float,
        "resolve_timeout": float,
        "local_dc": str,
        "max_commit_bytes": int,
        "activation": str,
        "slots": int,
    },
    "memory": {},
}


def open_store(url: str, **options: Any) -> Store:
    """A new, unopened store for ``url`` (see the module docstring for the forms).

    ``options`` are passed to the store's constructor (e.g. ``create=False``:
    refuse to create a missing SQLite file or CQL keyspace). A malformed URL,
    an unknown scheme or option, or a bad option value raises ``ValueError``
    naming what was wrong; a CQL URL without the driver installed raises
    ``ImportError`` naming the extra to install.
    """
    if not isinstance(url, str):
        raise TypeError(f"a store URL is a str, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _OPTIONS:
        what = f"unknown scheme {scheme!r}" if sep else "no scheme"
        raise ValueError(f"bad store URL {url!r}: {what}; use one of: {_FORMS}")
    rest, _, query = rest.partition("?")
    kwargs = _query_options(url, scheme, query)
    kwargs.update(options)
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        path = unquote(rest)
        if not path or path.endswith("/"):
            raise ValueError(
                f"bad store URL {url!r}: no SQLite file named (sqlite:///abs/path/app.db or "
                "sqlite://relative.db)"
            )
        return SQLiteStore(path, **kwargs)
    if scheme == "cql":
        return _cql(url, rest, kwargs)
    from .memory import MemoryStore

    if "/" in rest:
        raise ValueError(f"bad store URL {url!r}: a memory store name has no '/'")
    return MemoryStore(name=unquote(rest) or None, **kwargs)


def _query_options(url: str, scheme: str, query: str) -> dict[str, Any]:
    known = _OPTIONS[scheme]
    out: dict[str, Any] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError(f"bad store URL {url!r}: cannot read options {query!r}") from None
    for name, text in pairs:
        convert = known.get(name)
        if convert is None:
            names = ", ".join(known) or "none"
            raise ValueError(
                f"bad store URL {url!r}: unknown option {name!r} for {scheme} (known: {names})"
            )
        try:
            out[name] = convert(text)
        except ValueError:
            raise ValueError(
                f"bad store URL {url!r}: option {name}={text!r} is not a valid value"
            ) from None
    return out


def _cql(url: str, rest: str, kwargs: dict[str, Any]) -> Store:
    hosts_part, _, keyspace = rest.partition("/")
    hosts = hosts_part.split(",")
    if not hosts_part or any(not h.strip() for h in hosts):
        raise ValueError(f"bad store URL {url!r}: name CQL hosts as cql://host:9042,host2/keyspace")
    if "/" in keyspace:
        raise ValueError(f"bad store URL {url!r}: a keyspace has no '/'")
    try:
        from .cql import ScyllaStore
    except ImportError as exc:
        raise ImportError(
            f"store URL {url!r} needs the CQL driver: pip install 'dna-actors[cql]' ({exc})"
        ) from exc
    return ScyllaStore(hosts, keyspace or "dna", **kwargs)
