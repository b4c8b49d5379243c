"""The pending KV writes of one actor activation, in two layers.

Pure-Python twin of ``writeset.pyx``; both must behave identically.

``current`` is what the handlers of the running batch have written;
``committing`` is what ``take()`` handed to the store and is not durable yet.
Reads look in ``current``, then ``committing``, then (the caller) the store.
``begin()`` marks the start of a handler; ``rollback()`` restores ``current``
exactly as it was then.
"""

from __future__ import annotations

from typing import Any


class _Missing:
    """Type of ``MISSING``: no pending write or delete for the key."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class WriteSet:
    """Pending writes: last write per (module, key) wins; see the module docstring."""

    __slots__ = ("_com", "_cur", "_last_map", "_last_mod", "_logging", "_ncom", "_undo")

    def __init__(self) -> None:
        self._cur: dict[str, dict[str, bytes | None]] = {}  # the layer handlers build
        self._com: dict[str, dict[str, bytes | None]] = {}  # handed to the store
        self._ncom = 0  # keys in _com; 0 means nothing is committing
        self._last_mod: str | None = None  # module of the last write ...
        self._last_map: dict[str, bytes | None] | None = None  # ... and its dict in _cur
        self._undo: list[Any] = []  # flat (map, key, previous or MISSING) triples
        self._logging = False  # begin() was called since the last take()/clear()

    def _put(self, module: str, key: str, value: bytes | None) -> None:
        if type(module) is not str or type(key) is not str:
            raise TypeError(
                f"module and key must be str, not {type(module).__name__} "
                f"and {type(key).__name__}"
            )
        if module is self._last_mod:
            d = self._last_map
            assert d is not None
        else:
            d = self._cur.get(module)
            if d is None:
                d = self._cur[module] = {}
            self._last_mod = module
            self._last_map = d
        if self._logging:
            self._undo += (d, key, d.get(key, MISSING))
        d[key] = value

    def write(self, module: str, key: str, value: bytes) -> None:
        """Buffer ``module/key = value`` (bytes) in the current layer."""
        if type(value) is not bytes:
            raise TypeError(f"value must be bytes, not {type(value).__name__}")
        self._put(module, key, value)

    def delete(self, module: str, key: str) -> None:
        """Buffer the removal of ``module/key`` in the current layer."""
        self._put(module, key, None)

    def begin(self) -> None:
        """A handler starts: ``rollback()`` will undo what follows."""
        if self._undo:
            self._undo = []
        self._logging = True

    def rollback(self) -> None:
        """Undo every write and delete of the current layer since ``begin()``."""
        undo = self._undo
        for i in range(len(undo) - 3, -1, -3):
            d, key, old = undo[i], undo[i + 1], undo[i + 2]
            if old is MISSING:
                del d[key]
            else:
                d[key] = old
        if undo:
            self._undo = []

    def get(self, module: str, key: str) -> Any:
        """The pending value: bytes, None (pending delete) or ``MISSING``."""
        d = self._cur.get(module)
        if d is not None:
            v = d.get(key, MISSING)
            if v is not MISSING:
                return v
        if self._ncom:
            d = self._com.get(module)
            if d is not None:
                return d.get(key, MISSING)
        return MISSING

    def take(self) -> list[tuple[str, str, bytes | None]]:
        """Rows ``(module, key, bytes | None)`` of the current layer, which
        becomes the committing layer (replacing it); current is then empty."""
        rows = [(module, k, v) for module, d in self._cur.items() for k, v in d.items()]
        self._com = self._cur
        self._ncom = len(rows)
        self._reset_current()
        return rows

    def settle(self) -> None:
        """The committing layer is durable: drop it."""
        self._com = {}
        self._ncom = 0

    def clear(self) -> None:
        """Drop both layers (a failed commit, a restart)."""
        self.settle()
        self._reset_current()

    def _reset_current(self) -> None:
        self._cur = {}
        self._last_mod = None
        self._last_map = None
        if self._undo:
            self._undo = []
        self._logging = False

    def __len__(self) -> int:
        return sum(map(len, self._cur.values()))

    @property
    def has_committing(self) -> bool:
        """True between a ``take()`` that returned rows and ``settle()``/``clear()``."""
        return self._ncom > 0

    def pending(self, module: str, prefix: str) -> list[tuple[str, bytes | None]]:
        """``(key, bytes | None)`` of ``module`` with key starting with ``prefix``,
        both layers merged (current wins), sorted by key."""
        merged: dict[str, bytes | None] = {}
        for layer in (self._com, self._cur):
            d = layer.get(module)
            if d is None:
                continue
            if not prefix:
                merged.update(d)
                continue
            for key, value in d.items():
                if key.startswith(prefix):
                    merged[key] = value
        return sorted(merged.items())

    def __repr__(self) -> str:
        return f"<WriteSet {len(self)} current, {self._ncom} committing>"
