"""A bounded FIFO of Python objects: the mailbox of one activation.

Pure-Python twin of ``mailbox.pyx``; both must behave identically. Idle
mailboxes hold no storage: the deque is dropped whenever it is drained empty.
"""

from __future__ import annotations

from collections import deque
from operator import index
from typing import Any


class Mailbox:
    """Bounded FIFO ring buffer. ``push`` returns False when full."""

    __slots__ = ("_cap", "_q")

    def __init__(self, capacity: int) -> None:
        capacity = index(capacity)
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be at least 1, not {capacity}")
        self._cap = capacity  # most items ever held at once
        self._q: deque[Any] | None = None  # None while empty

    def push(self, item: Any) -> bool:
        """Append ``item``; False (item not stored) when the mailbox is full."""
        q = self._q
        if q is None:
            q = self._q = deque()
        elif len(q) >= self._cap:
            return False
        q.append(item)
        return True

    def drain(self, max_n: int) -> list[Any]:
        """Remove and return up to ``max_n`` oldest items, oldest first."""
        max_n = index(max_n)
        if max_n < 0:
            raise ValueError(f"max_n must be >= 0, not {max_n}")
        q = self._q
        if q is None:
            return []
        if max_n >= len(q):
            self._q = None
            return list(q)
        popleft = q.popleft
        return [popleft() for _ in range(max_n)]

    def clear(self) -> list[Any]:
        """Remove and return every item, oldest first."""
        q = self._q
        self._q = None
        return [] if q is None else list(q)

    def __len__(self) -> int:
        q = self._q
        return 0 if q is None else len(q)

    @property
    def capacity(self) -> int:
        """Most items the mailbox holds at once."""
        return self._cap

    @property
    def full(self) -> bool:
        """True when ``push`` would refuse."""
        q = self._q
        return q is not None and len(q) >= self._cap

    def __repr__(self) -> str:
        return f"<Mailbox {len(self)}/{self._cap}>"
