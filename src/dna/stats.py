"""Counters a node keeps about its work (for ``dna bench`` and ``dna.metrics``).

Each is a plain attribute or dict bumped where the work is done; nothing here
formats or exports (``dna.metrics`` reads them when scraped).
"""

from __future__ import annotations

import bisect
from collections import defaultdict, deque
from typing import Any

__all__ = ["COMMIT_BUCKETS", "RECENT_COMMITS", "Stats"]

#: Upper bounds (seconds) of the commit latency histogram ``Stats.commit_counts``.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                  5.0, 10.0)
#: Commit latencies kept for ``percentile`` (the most recent; older ones only count in
#: the histogram), so a node that runs for months holds a bounded list.
RECENT_COMMITS = 100_000


class Stats:
    """Batches, messages, commits and lifecycle events since the node started."""

    __slots__ = (
        "batch_sizes",
        "batches",
        "by_type",
        "claims",
        "commit_counts",
        "commit_rows",
        "commit_sum",
        "commit_times",
        "commits",
        "errors",
        "forwards",
        "max_batch",
        "messages",
        "passivations",
    )

    def __init__(self) -> None:
        self.batches = 0  # batches dispatched
        self.messages = 0  # messages dispatched
        self.max_batch = 0  # largest batch
        self.commits = 0  # store commits that succeeded
        self.commit_rows = 0  # rows in those commits
        self.commit_times: deque[float] = deque(maxlen=RECENT_COMMITS)  # seconds, latest
        self.commit_counts = [0] * (len(COMMIT_BUCKETS) + 1)  # per bucket (+Inf last)
        self.commit_sum = 0.0  # seconds, every commit
        # ops counters (dna.metrics): keyed by actor class where per type
        self.by_type: defaultdict[Any, int] = defaultdict(int)  # actor class -> messages
        self.batch_sizes = [0] * 65  # [k]: batches of 2**(k-1) < n <= 2**k messages
        self.errors: dict[Any, int] = {}  # actor class -> handlers that raised
        self.claims = 0  # names claimed in the store (activations begun)
        self.passivations = 0  # activations passivated (idle, drain, stop)
        self.forwards = 0  # messages forwarded to a peer

    def batch(self, n: int, atype: Any = None) -> None:
        self.batches += 1
        self.messages += n
        if n > self.max_batch:
            self.max_batch = n
        self.by_type[atype] += n
        self.batch_sizes[(n - 1).bit_length()] += 1

    def failed(self, atype: Any) -> None:
        """A handler of ``atype`` raised (call or cast)."""
        self.errors[atype] = self.errors.get(atype, 0) + 1

    def commit(self, rows: int, seconds: float) -> None:
        self.commits += 1
        self.commit_rows += rows
        self.commit_times.append(seconds)
        self.commit_counts[bisect.bisect_left(COMMIT_BUCKETS, seconds)] += 1
        self.commit_sum += seconds

    def percentile(self, p: float) -> float:
        """Commit latency percentile in seconds over the last ``RECENT_COMMITS``
        commits (0 when nothing committed)."""
        times = sorted(self.commit_times)
        if not times:
            return 0.0
        return times[min(len(times) - 1, int(p / 100 * len(times)))]
