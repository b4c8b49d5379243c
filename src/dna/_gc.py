"""The cyclic collector's young-generation threshold while nodes run
(``Node(gc_threshold=...)``).

CPython collects its youngest generation every 700 net container allocations,
and each time a collection's survivors grow the old generation by a quarter it
runs a full collection over every tracked object. A node's activations are
long-lived objects made in bursts (a cold start, a failover, a mass of due
timers), so a burst pays one full collection per quarter of growth, each over
the whole heap. Measured on the timer fire phase (10k activations, 100k
timers), 10 full collections took about 1.3 s of 4.5 s; with a threshold of
50,000 none ran, and the phase went 1.46x faster (``bench/timers.py --gc
both``). A cold start of 20k actors on SQLite went 2.9x faster, 100k on CQL
slot leases 2x (``bench/activations.py --gc both``).

A node raises the threshold only while the process still has CPython's default
thresholds (a process that tuned its collector keeps its own), and the last
node to stop puts back what it found, unless someone changed it meanwhile.
Garbage cycles still go: a young collection every ``gc_threshold``
allocations, full collections by CPython's own rules.
"""

from __future__ import annotations

import gc
import threading

CPYTHON_DEFAULT = (700, 10, 10)
DEFAULT_THRESHOLD = 50_000  # Node's default young-generation threshold

_lock = threading.Lock()  # nodes may run on several threads' loops
_holders = 0  # running nodes that applied the setting
_applied: tuple[int, int, int] | None = None  # what they set
_found: tuple[int, int, int] = CPYTHON_DEFAULT  # what was there before


def acquire(threshold: int | None) -> bool:
    """Apply ``threshold`` (None: leave the collector alone). True when this
    caller holds the setting and must ``release()`` it once."""
    global _holders, _applied, _found
    if threshold is None:
        return False
    with _lock:
        if _holders == 0:
            found = gc.get_threshold()
            if found != CPYTHON_DEFAULT:  # the process chose its own: keep it
                return False
            _found, _applied = found, (threshold, *found[1:])
            gc.set_threshold(*_applied)
        _holders += 1  # a later node keeps the setting in force, whatever it asked
        return True


def release() -> None:
    """One holder is done; the last puts back what it found, if still ours."""
    global _holders, _applied
    with _lock:
        if _holders == 0:
            raise RuntimeError("gc threshold released more often than acquired")
        _holders -= 1
        if _holders == 0:
            if gc.get_threshold() == _applied:
                gc.set_threshold(*_found)
            _applied = None


def check(threshold: int | None) -> None:
    """ValueError for a threshold that is not None or a positive int."""
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int)
                                  or threshold < 1):
        raise ValueError(f"gc_threshold must be None or a positive int, got {threshold!r}")
