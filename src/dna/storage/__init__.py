"""Storage modules an actor's handlers touch: ``KV``, ``Log``, ``Outbox``, ``Timers``. A
module is one file here (see ``base`` for the protocol)."""

from __future__ import annotations

from .base import StorageContext, StorageModule
from .kv import KV
from .log import Log
from .outbox import Outbox
from .timers import Timer, Timers

__all__ = ["KV", "Log", "Outbox", "StorageContext", "StorageModule", "Timer", "Timers"]
