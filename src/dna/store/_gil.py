"""The GIL switch interval a store's driver thread needs while the store is open.

A store whose work runs on a thread of its own (the SQLite writer, the CQL
driver's reactor) takes the GIL back a few times per commit; at CPython's
default 5 ms switch interval each take can wait out a busy event loop.
Measured here: SQLite seed bench ratio 0.47-0.70 -> 0.76-1.2, CQL 0.71-0.80 ->
0.85-0.88 (``dna bench --ceiling``) with 1 ms.
"""

from __future__ import annotations

import sys

__all__ = ["SwitchInterval"]


class SwitchInterval:
    """Lowers ``sys.setswitchinterval`` while any store that asked for it is open."""

    _holders = 0  # open stores that lowered it
    _saved: float | None = None  # the interval before the first of them

    def __init__(self) -> None:
        self.held = False  # this store is one of the holders

    def lower(self, interval: float | None) -> None:
        if interval is None or self.held:
            return
        cls = SwitchInterval
        if cls._holders == 0:
            cls._saved = sys.getswitchinterval()
        cls._holders += 1
        self.held = True
        if sys.getswitchinterval() > interval:
            sys.setswitchinterval(interval)

    def restore(self) -> None:
        if not self.held:
            return
        cls = SwitchInterval
        self.held = False
        cls._holders -= 1
        if cls._holders == 0 and cls._saved is not None:
            sys.setswitchinterval(cls._saved)
            cls._saved = None
