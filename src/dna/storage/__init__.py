"""Storage modules an actor's handlers touch: ``KV``, ``Timers``. A module is one file here
(see ``base`` for the protocol)."""

from __future__ import annotations

from .base import StorageContext, StorageModule
from .kv import KV
from .timers import Timer, Timers

__all__ = ["KV", "StorageContext", "StorageModule", "Timer", "Timers"]
