"""Counters a node keeps about its batches and commits (for ``dna bench``)."""

from __future__ import annotations

__all__ = ["Stats"]


class Stats:
    """Batches, messages and commit latencies since the node started."""

    __slots__ = ("batches", "commit_rows", "commit_times", "commits", "max_batch", "messages")

    def __init__(self) -> None:
        self.batches = 0  # batches dispatched
        self.messages = 0  # messages dispatched
        self.max_batch = 0  # largest batch
        self.commits = 0  # store commits that succeeded
        self.commit_rows = 0  # rows in those commits
        self.commit_times: list[float] = []  # seconds per commit

    def batch(self, n: int) -> None:
        self.batches += 1
        self.messages += n
        if n > self.max_batch:
            self.max_batch = n

    def commit(self, rows: int, seconds: float) -> None:
        self.commits += 1
        self.commit_rows += rows
        self.commit_times.append(seconds)

    def percentile(self, p: float) -> float:
        """Commit latency percentile in seconds (0 when nothing committed)."""
        times = sorted(self.commit_times)
        if not times:
            return 0.0
        return times[min(len(times) - 1, int(p / 100 * len(times)))]
