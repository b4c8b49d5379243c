"""Storage modules an actor's handlers touch: ``KV`` first."""

from __future__ import annotations

from .kv import KV

__all__ = ["KV"]
