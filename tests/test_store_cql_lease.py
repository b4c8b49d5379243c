"""ScyllaStore's lease on a real CQL server: what this node knows of its own lease
after a pause (``last_heartbeat``, ``lease_term``), what it reports of its peers
(``nodes()``: alive / suspect / dead), the collection of dead nodes' rows, and
commits whose outcome cannot be known (``CommitUnknown``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import CQL_HOSTS, CQL_KEYSPACE, NO_CQL_REASON, opened

import dna
from dna.errors import CommitFailed, CommitUnknown
from dna.store import ActorId
from dna.store.cql import ScyllaStore

pytestmark = [pytest.mark.cql, pytest.mark.skipif(not CQL_HOSTS, reason=NO_CQL_REASON)]

SRC = str(Path(dna.__file__).resolve().parent.parent)


def store(**kw: Any) -> ScyllaStore:
    return ScyllaStore(CQL_HOSTS.split(","), CQL_KEYSPACE, **kw)


async def until(cond: Any, timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(step)


class SlowBeats:
    """Wraps a store's bridge: answers to heartbeats (or to ``queries``) reach the store
    ``delay`` seconds late, as when the process is paused between sending one and
    reading its answer."""

    def __init__(self, s: ScyllaStore, delay: float, queries: tuple[Any, ...] = ()) -> None:
        self.inner = s._bridge
        assert self.inner is not None and s._st is not None
        self.loop = self.inner.loop
        self.beats = queries or (s._st.node_beat, s._st.node_beat_load)
        self.delay = delay

    def run(self, query: Any, params: Any = None, *args: Any, **kw: Any) -> asyncio.Future[Any]:
        fut = self.inner.run(query, params, *args, **kw)  # type: ignore[union-attr]
        if query not in self.beats:
            return fut
        late: asyncio.Future[Any] = self.loop.create_future()

        def answer(f: asyncio.Future[Any]) -> None:
            self.loop.call_later(self.delay, _copy, f, late)

        fut.add_done_callback(answer)
        return late


def _copy(src: asyncio.Future[Any], dst: asyncio.Future[Any]) -> None:
    if src.exception() is not None:
        dst.set_exception(src.exception())  # type: ignore[arg-type]
    else:
        dst.set_result(src.result())


async def test_last_heartbeat_is_when_it_was_sent_not_answered(unique: str) -> None:
    async with opened(store(heartbeat_interval=None, lease=1.0), f"a-{unique}") as s:
        loop = asyncio.get_running_loop()
        s._bridge = SlowBeats(s, 1.2)  # type: ignore[assignment]
        before = loop.time()
        await s.heartbeat(3)
        after = loop.time()
        assert after - before >= 1.2
        assert s.last_heartbeat is not None and before <= s.last_heartbeat <= before + 0.1
        # its answer came more than a lease after the previous heartbeat was sent
        assert s.lease_term == 1


async def test_a_timely_heartbeat_keeps_the_term(unique: str) -> None:
    async with opened(store(heartbeat_interval=None, lease=5.0), f"a-{unique}") as s:
        first = s.last_heartbeat
        await s.heartbeat()
        assert s.last_heartbeat is not None and first is not None and s.last_heartbeat > first
        assert s.lease_term == 0


# A node process whose store reports, every 20 ms, how old its lease looks and its
# term; the test stops it (SIGSTOP) past the lease and continues it.
CHILD = r"""
import asyncio, json, sys
from dna.store.cql import ScyllaStore

async def main(hosts, keyspace, node):
    s = ScyllaStore(hosts.split(","), keyspace, heartbeat_interval=0.1, lease=1.0)
    await s.open(node)
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        print(json.dumps({"age": t - s.last_heartbeat, "term": s.lease_term}), flush=True)
        await asyncio.sleep(0.02)

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_node_paused_past_its_lease_never_sees_it_fresh_in_the_old_term(
    unique: str,
) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")])
    for round_ in range(3):  # the heartbeat in flight at the pause lands differently each time
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, CQL_HOSTS, CQL_KEYSPACE, f"p{round_}-{unique}",
            stdout=asyncio.subprocess.PIPE, env=env,
        )
        assert proc.stdout is not None
        try:
            for _ in range(20):  # heartbeating well
                line = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
            assert line["term"] == 0 and line["age"] < 0.5, line
            proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(1.8)  # the pause itself, past the 1 s lease
            proc.send_signal(signal.SIGCONT)
            seen = []
            while not seen or seen[-1]["term"] == 0 or len(seen) < 30:
                seen.append(json.loads(await asyncio.wait_for(proc.stdout.readline(), 10)))
                assert len(seen) < 500, "the term never changed after the pause"
            # the first report after the wake may come from before the stop was delivered
            woken = [r for r in seen if r["age"] > 1.0 or r["term"] > 0]
            fresh_old = [r for r in seen[seen.index(woken[0]):] if r["term"] == 0
                         and r["age"] < 0.5]
            assert not fresh_old, f"lease looked fresh in the old term after the pause: {seen}"
            # one new term at least: on a loaded machine (CI beside a busy loop) a beat
            # can lapse again after the wake, and that is a new term too
            assert seen[-1]["term"] >= 1 and seen[-1]["age"] < 0.5, seen[-1]
        finally:
            proc.kill()
            await proc.wait()


# ------------------------------------------------------------ peers as nodes() reports them


async def test_a_listing_answered_late_judges_peers_as_of_its_read(unique: str) -> None:
    """A listing of nodes answered more than a lease after it was sent (this process
    paused in between: a woken node) tells nothing of what came after the read. A peer
    whose counter had just moved at the read is not dead for it; it was judged dead,
    and a node that woke refused calls to that live peer (``NotOwner``)."""
    a_id = f"a-{unique}"
    async with opened(store(heartbeat_interval=0.1), a_id) as a:
        b = store(heartbeat_interval=None, lease=1.0)
        async with opened(b, f"b-{unique}"):

            async def a_alive() -> Any:
                rec = {n.node_id: n for n in await b.nodes()}.get(a_id)
                return rec if rec is not None and rec.state == "alive" else None

            await until(a_alive, 5, "a seen alive")
            assert a._beat_task is not None
            a._beat_task.cancel()  # a's counter stops: only our clock can make it dead
            await until(a_alive, 5, "a seen alive since its last beat")
            assert b._st is not None
            inner, b._bridge = b._bridge, SlowBeats(b, 1.3, (b._st.node_all,))  # type: ignore[assignment]
            late = {n.node_id: n for n in await b.nodes()}[a_id]
            assert late.state != "dead" and late.alive is True, late
            assert late.heartbeat_age is not None and late.heartbeat_age < 0.5, late
            b._bridge = inner
            # a timely listing still finds the stopped counter dead a lease after it moved
            rec = {n.node_id: n for n in await b.nodes()}[a_id]
            assert rec.state == "dead" and rec.alive is False, rec


async def test_nodes_reports_alive_suspect_dead_then_collects_the_row(unique: str) -> None:
    a_id = f"a-{unique}"
    async with opened(store(heartbeat_interval=0.1), a_id) as a:
        b = store(heartbeat_interval=0.1, lease=1.5, dead_node_grace=0.5)
        async with opened(b, f"b-{unique}"):

            async def state_of_a(want: str) -> Any:
                rec = {n.node_id: n for n in await b.nodes()}.get(a_id)
                return rec if rec is not None and rec.state == want else None

            first = {n.node_id: n for n in await b.nodes()}[a_id]
            assert (first.state, first.alive, first.heartbeat_age) == ("unknown", None, None)
            rec = await until(lambda: state_of_a("alive"), 5, "a seen alive")
            assert rec.alive is True and rec.heartbeat_age < 0.5
            assert a._beat_task is not None
            a._beat_task.cancel()  # a hangs: its counter stops
            stopped = time.monotonic()
            rec = await until(lambda: state_of_a("suspect"), 5, "a suspect")
            assert rec.alive is True and 0.2 <= rec.heartbeat_age < 1.5
            rec = await until(lambda: state_of_a("dead"), 5, "a dead")
            assert rec.alive is False and rec.heartbeat_age >= 1.5
            assert time.monotonic() - stopped >= 1.3

            async def gone() -> bool:
                return a_id not in {n.node_id for n in await b.nodes()}

            await until(gone, 10, "a's row collected")
            assert time.monotonic() - stopped >= 1.5 + 0.5 - 0.2
            # a wakes up: its next heartbeat rebuilds its row, address included
            a.address = "127.0.0.1:7101"
            await a.heartbeat()
            rec = {n.node_id: n for n in await b.nodes()}[a_id]
            assert rec.address == "127.0.0.1:7101" and rec.state == "unknown"


async def test_a_live_peer_row_is_never_collected(unique: str) -> None:
    async with opened(store(heartbeat_interval=0.1), f"a-{unique}"):
        b = store(heartbeat_interval=0.1, lease=0.6, dead_node_grace=0.0)
        async with opened(b, f"b-{unique}"):
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                rec = {n.node_id: n for n in await b.nodes()}.get(f"a-{unique}")
                assert rec is not None and rec.state in ("unknown", "alive")
                await asyncio.sleep(0.1)


# ------------------------------------------------------------ unknown outcomes


class LoseEverything:
    """Wraps a store's bridge: every request is sent (or not), and its caller gets
    the driver's timeout instead of the answer, until ``heal()``."""

    def __init__(self, s: ScyllaStore, send: bool) -> None:
        self.inner = s._bridge
        assert self.inner is not None
        self.loop = self.inner.loop
        self.send = send
        self.lost = 0

    def run(self, query: Any, params: Any = None, *args: Any, **kw: Any) -> asyncio.Future[Any]:
        from cassandra import OperationTimedOut

        self.lost += 1
        lost: asyncio.Future[Any] = self.loop.create_future()

        def fail(_: Any) -> None:
            lost.set_exception(OperationTimedOut("reply lost (test)"))

        if self.send:
            self.inner.run(query, params, *args, **kw).add_done_callback(fail)  # type: ignore[union-attr]
        else:
            self.loop.call_soon(fail, None)
        return lost


@pytest.mark.parametrize("sent", [True, False])
async def test_a_commit_whose_outcome_cannot_be_read_back_is_commit_unknown(
    unique: str, sent: bool
) -> None:
    async with opened(store(heartbeat_interval=None, resolve_timeout=0.5), f"a-{unique}") as s:
        c = await s.claim(ActorId(f"cql-{unique}", "Thing", "a"))
        real = s._bridge
        lossy = LoseEverything(s, send=sent)
        s._bridge = lossy  # type: ignore[assignment]
        rows = [("kv", f"k{i}", b"v") for i in range(10)]
        with pytest.raises(CommitUnknown, match="outcome unknown") as info:
            await s.commit(c, rows)
        assert not isinstance(info.value, CommitFailed)
        assert isinstance(info.value, dna.errors.Retryable)
        assert lossy.lost >= 2  # the batch, then at least one read-back
        s._bridge = real
        # it did apply when sent: a CommitFailed ("nothing of it is visible") would lie
        assert len(await s.list(c, "kv")) == (10 if sent else 0)


def test_unknown_outcome_maps_the_drivers_real_errors() -> None:
    from cassandra import ConsistencyLevel, OperationTimedOut, WriteTimeout, WriteType

    from dna.store.cql._bridge import AMBIGUOUS, unknown_outcome

    wt = WriteTimeout(
        "timed out", consistency=ConsistencyLevel.QUORUM, required_responses=2,
        received_responses=1, write_type=WriteType.CAS,
    )
    for exc in (wt, OperationTimedOut("no answer")):
        assert isinstance(exc, AMBIGUOUS)
        err = unknown_outcome(exc, OperationTimedOut("read back"), "commit of x")
        assert isinstance(err, CommitUnknown) and not isinstance(err, CommitFailed)
        assert "commit of x" in str(err) and type(exc).__name__ in str(err)
