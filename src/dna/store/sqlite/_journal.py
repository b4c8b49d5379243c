"""The SQLite store's log-first commit path (``commit="log"``): the journal.

A commit appends its rows as ONE record (a blob) to the ``log`` table and is
acknowledged when that transaction is durable: one B-tree insert of a large
blob instead of one per row. The writer thread moves records into ``data``
later, in large transactions, oldest first (the *applier*); applying a record
and deleting it are one transaction, so a record is applied exactly once,
by whichever connection (of whichever process) gets there first.

Invariants that keep every acknowledged write visible:

- a claim (on either commit path, by any process) replays the actor's
  records inside the claim's transaction before it grants the claim: the new
  owner starts from every write the old owner had acknowledged;
- only the owner appends an actor's records, so while it owns the actor its
  unapplied records are exactly the ones it appended itself (``pending``);
  reads of an actor with pending records first apply them (``sync_actor``);
- timer rows skip the log and go to ``data`` in the append's transaction:
  the due index (``due_timers``) never misses a timer and needs no merge.

A record is ``_c.encode_rows`` of the rows (lengths and bytes, no Python
objects): the applier binds and steps it in place without the GIL
(``Connection.commit_records``), so applying takes the GIL back once per
transaction, never per row or record, and the event loop runs on beside it.
"""

from __future__ import annotations

from typing import Any

from ...errors import StoreUnavailable
from ..base import TIMERS_MODULE, Row
from ._c import Connection, encode_rows

__all__ = ["LOG_SCHEMA", "Journal", "replay_actor"]

# created at open when missing; an older DNA refuses a file at schema 2 (see _schema)
LOG_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS log ("
    "seq INTEGER PRIMARY KEY, actor INTEGER NOT NULL, n INTEGER NOT NULL, body BLOB NOT NULL);"
    "CREATE INDEX IF NOT EXISTS log_actor ON log (actor, seq)"
)
_APPEND = "INSERT INTO log (actor, n, body) VALUES (?, ?, ?)"
# record heads only: a body is read (its overflow pages) only when it is applied
_OF_ACTOR = "SELECT seq, n FROM log WHERE actor = ? ORDER BY seq"
_DROP_ACTOR = "DELETE FROM log WHERE actor = ?"
_OLDEST = "SELECT seq, actor, n FROM log WHERE seq > ? ORDER BY seq LIMIT 64"
_BODY = "SELECT body FROM log WHERE seq = ?"
_DROP_UPTO = "DELETE FROM log WHERE seq <= ?"
REPLAY_ROWS = 20_000  # rows per section without the GIL when a claim replays an actor

# an effect of a transaction, applied to the journal's state once it committed:
# ("add", actor, seq, n), ("done", actor, seq, n), ("clear", actor, 0, n)
Effect = tuple[str, int, int, int]


def replay_actor(
    conn: Connection, actor: int, upsert: str, delete: str, effects: list[Effect]
) -> None:
    """Apply every record of ``actor`` in order and drop them (inside the caller's
    transaction; on an error the caller rolls back, the records stay)."""
    found: list[Any] = conn.execute(_OF_ACTOR, (actor,))
    if not found:
        effects.append(("clear", actor, 0, 0))
        return
    n = 0
    records: list[tuple[int, bytes]] = []
    rows = 0
    for seq, count in found:  # a few records at a time: a 1M-row backlog stays on disk
        records.append((actor, conn.execute(_BODY, (seq,))[0][0]))
        rows += count
        if rows >= REPLAY_ROWS:
            n += conn.commit_records(upsert, delete, records)
            records, rows = [], 0
    n += conn.commit_records(upsert, delete, records)
    conn.execute(_DROP_ACTOR, (actor,))
    effects.append(("clear", actor, 0, n))


class Journal:
    """The log-first state of one writer: which appended records are unapplied.

    Mutated by the writer thread only, after the transaction that caused it
    committed (``publish``); read by the event loop (``has_pending``), where a
    dict lookup under the GIL sees either the old or the new entry."""

    def __init__(self, max_rows: int, apply_rows: int) -> None:
        self.max_rows = max_rows  # writers wait while the log holds more rows than this
        self.apply_rows = apply_rows  # rows per applier transaction (at least one record)
        self.backlog = 0  # rows in the log (ours, and any found at open)
        self.applied = 0  # rows applied by this writer (statistics, benches)
        self.apply_seconds = 0.0  # time spent in applier transactions (statistics, benches)
        self.pending: dict[int, set[int]] = {}  # actor -> seqs we appended, unapplied
        self.apply_error: BaseException | None = None  # the applier's last failure

    def has_pending(self, actor: int) -> bool:
        return bool(self.pending.get(actor))

    def over(self) -> bool:
        """Past the bound: apply before taking any more commits."""
        return self.backlog >= self.max_rows

    def eager(self) -> bool:
        """Past half the bound: apply whenever the writer has nothing else to do."""
        return self.backlog > self.max_rows // 2

    def append(
        self, conn: Connection, actor: int, rows: list[Row], upsert: str, delete: str,
        effects: list[Effect],
    ) -> None:
        """Append ``rows`` as one record (timer rows go to ``data`` at once)."""
        if self.backlog >= self.max_rows and self.apply_error is not None:
            raise StoreUnavailable(
                f"the commit log is full ({self.backlog:,} rows) and applying it fails: "
                f"{self.apply_error}"
            )
        body, n = encode_rows(rows, TIMERS_MODULE)  # timer rows left out (no loop here)
        if n < len(rows):  # timer rows: into the data table now
            conn.commit_rows(upsert, delete, actor, [r for r in rows if r[0] == TIMERS_MODULE])
            if not n:
                return
        # with the GIL: handing it back and forth around one short insert cost the
        # event loop more than the insert (seed bench, alternating runs: 0.46-0.90M
        # puts/s without the GIL here, 0.83-0.97M with it)
        conn.execute(_APPEND, (actor, n, body))
        effects.append(("add", actor, conn.last_insert_rowid(), n))

    def apply_some(self, conn: Connection, upsert: str, delete: str, effects: list[Effect]) -> int:
        """Apply the oldest records, about ``apply_rows`` rows, inside the caller's
        transaction. Returns the rows applied (0: the log is empty)."""
        last = 0
        n = 0
        records: list[tuple[int, bytes]] = []
        while n < self.apply_rows:
            found: list[Any] = conn.execute(_OLDEST, (last,))
            if not found:
                break
            for seq, actor, count in found:
                records.append((actor, conn.execute(_BODY, (seq,))[0][0]))
                effects.append(("done", actor, seq, count))
                last = seq
                n += count
                if n >= self.apply_rows:
                    break
        conn.commit_records(upsert, delete, records)  # one section without the GIL
        if last:
            conn.execute(_DROP_UPTO, (last,))
        if n == 0:
            effects.append(("empty", 0, 0, 0))
        return n

    def drop_actor(self, conn: Connection, actor: int, effects: list[Effect]) -> None:
        """Forget ``actor``'s records unapplied (it is being destroyed)."""
        found: list[Any] = conn.execute("SELECT coalesce(sum(n), 0) FROM log WHERE actor = ?",
                                        (actor,))
        conn.execute(_DROP_ACTOR, (actor,))
        effects.append(("drop", actor, 0, int(found[0][0])))

    def publish(self, effects: list[Effect]) -> None:
        """The effects of a committed transaction, in order."""
        for what, actor, seq, n in effects:
            if what == "add":
                self.pending.setdefault(actor, set()).add(seq)
                self.backlog += n
                continue
            if what == "done":
                seqs = self.pending.get(actor)
                if seqs is not None:
                    seqs.discard(seq)
                    if not seqs:
                        del self.pending[actor]
                self.applied += n
            elif what in ("clear", "drop"):
                # every record of the actor is gone: ours, or applied by another process
                self.pending.pop(actor, None)
                if what == "clear":
                    self.applied += n
            elif what == "empty":  # others applied what we counted
                self.backlog = 0
                self.pending.clear()
                continue
            self.backlog = max(0, self.backlog - n)
