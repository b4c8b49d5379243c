"""Storage modules an actor's handlers touch: ``KV`` first. A module is one file here
(see ``base`` for the protocol)."""

from __future__ import annotations

from .base import StorageContext, StorageModule
from .kv import KV

__all__ = ["KV", "StorageContext", "StorageModule"]
