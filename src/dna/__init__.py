"""DNA: Durable Named Actors.

Named actors with one live activation per name across a cluster, durable
per-actor storage with atomic batched writes, and in-order messaging.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import errors
from .actor import Actor, ActorRef, call, cast
from .catalog import CatalogEntry, CatalogPage
from .errors import ActorError, InterfaceError, NotOwner, Overloaded, Timeout
from .ids import ActorId
from .node import Node
from .store import Store

if TYPE_CHECKING:
    from .store.cql import ScyllaStore
    from .store.memory import MemoryStore
    from .store.sqlite import SQLiteStore

__version__ = "0.1.0"

# a library logs to named loggers ("dna.node", "dna.transport", ...); the application
# decides where records go (dna node: see dna._log)
logging.getLogger("dna").addHandler(logging.NullHandler())

__all__ = [
    "Actor",
    "ActorError",
    "ActorId",
    "ActorRef",
    "CatalogEntry",
    "CatalogPage",
    "InterfaceError",
    "MemoryStore",
    "Node",
    "NotOwner",
    "Overloaded",
    "SQLiteStore",
    "ScyllaStore",
    "Store",
    "Timeout",
    "call",
    "cast",
    "errors",
]

_LAZY = {
    "SQLiteStore": ".store.sqlite",
    "MemoryStore": ".store.memory",
    "ScyllaStore": ".store.cql",
}


def __getattr__(name: str) -> Any:
    # stores load lazily: importing dna must not import a database driver
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'dna' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value
