"""CQL-only tests of ScyllaStore against a real server (Cassandra from ci/cassandra).

They add to the shared contract suite: claim races between two clients,
whole-batch fencing, the server's size limit, unknown outcomes, lease-based
liveness, no server at open, and a server killed and restarted under load.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import CQL_HOSTS, CQL_KEYSPACE, NO_CQL_REASON, opened

from dna.errors import CommitFailed, NotOwner, StaleEpoch, StoreError, StoreUnavailable
from dna.store import ActorId, Claim
from dna.store.cql import ScyllaStore

pytestmark = [pytest.mark.cql, pytest.mark.skipif(not CQL_HOSTS, reason=NO_CQL_REASON)]

ROOT = Path(__file__).resolve().parent.parent
CASSANDRA_SH = ROOT / "ci" / "cassandra" / "cassandra.sh"


def store(**kw: Any) -> ScyllaStore:
    return ScyllaStore(CQL_HOSTS.split(","), CQL_KEYSPACE, **kw)


def aid(unique: str, key: str = "a") -> ActorId:
    return ActorId(f"cql-{unique}", "Thing", key)


async def test_two_clients_race_to_claim_exactly_one_wins(unique: str) -> None:
    async with opened(store(), f"a-{unique}") as a, opened(store(), f"b-{unique}") as b:
        for i in range(20):
            actor = aid(unique, f"race-{i}")
            got = await asyncio.gather(a.claim(actor), b.claim(actor), return_exceptions=True)
            winners = [g for g in got if isinstance(g, Claim)]
            losers = [g for g in got if not isinstance(g, Claim)]
            assert len(winners) == 1, got
            assert len(losers) == 1 and isinstance(losers[0], NotOwner), got
            assert losers[0].owner == winners[0].node_id
            assert winners[0].epoch == 1
            assert await a.owner_of(actor) == (winners[0].node_id, 1)


async def test_stale_epoch_batch_refused_whole(unique: str) -> None:
    actor = aid(unique)
    async with opened(store(), f"a-{unique}") as a, opened(store(), f"b-{unique}") as b:
        old = await a.claim(actor)
        await a.commit(old, [("kv", "kept", b"1")])
        await a.set_draining()
        new = await b.claim(actor)  # a draining owner's actors may be taken at once
        assert new.epoch == old.epoch + 1
        rows = [("kv", f"stale-{i}", b"x") for i in range(500)]
        rows += [("kv", "kept", None), ("other", "y", b"2")]
        with pytest.raises(StaleEpoch):
            await a.commit(old, rows)
        assert await b.list(new, "kv", limit=1000) == [("kept", b"1")]
        assert await b.list(new, "other") == []
        await b.commit(new, [("kv", "fresh", b"3")])
        assert await b.read(new, "kv", "fresh") == b"3"


async def test_batch_over_the_server_limit_fails_clearly_and_writes_nothing(unique: str) -> None:
    actor = aid(unique)
    # the client-side estimate off: the server's own limit (16 MiB messages) must refuse it
    async with opened(store(max_commit_bytes=None), f"a-{unique}") as s:
        c = await s.claim(actor)
        big = [("kv", f"big-{i:03d}", bytes(100_000)) for i in range(180)]  # ~18 MB
        with pytest.raises(StoreError) as info:
            await s.commit(c, big)
        assert not isinstance(info.value, StoreUnavailable)
        assert "too large" in str(info.value) and "never split" in str(info.value)
        assert await s.list(c, "kv", limit=1000) == []
        await s.commit(c, big[:10])  # the store and the claim still work
        assert len(await s.list(c, "kv", limit=1000)) == 10


async def test_commit_over_max_commit_bytes_is_refused_before_sending(unique: str) -> None:
    async with opened(store(max_commit_bytes=1_000_000), f"a-{unique}") as s:
        c = await s.claim(aid(unique))
        with pytest.raises(StoreError, match="max_commit_bytes"):
            await s.commit(c, [("kv", f"k{i}", bytes(1000)) for i in range(2000)])
        assert await s.list(c, "kv") == []


async def test_commit_over_the_statements_per_batch_limit_is_refused_whole(unique: str) -> None:
    async with opened(store(), f"a-{unique}") as s:
        c = await s.claim(aid(unique))
        with pytest.raises(StoreError, match="65534 writes per batch") as info:
            await s.commit(c, [("kv", f"k{i}", b"") for i in range(65_535)])
        assert not isinstance(info.value, StoreUnavailable)  # not worth retrying
        assert await s.list(c, "kv") == []


async def test_list_returns_every_row_past_the_drivers_page_size(unique: str) -> None:
    async with opened(store(), f"a-{unique}") as s:
        c = await s.claim(aid(unique))
        await s.commit(c, [("kv", f"k{i:05d}", b"%d" % i) for i in range(12_000)])
        got = await s.list(c, "kv", limit=100_000)
        assert [k for k, _ in got] == [f"k{i:05d}" for i in range(12_000)]
        assert len(await s.list(c, "kv", limit=7_000)) == 7_000
        assert (await s.list(c, "kv", start_after="k10999", limit=100_000))[0][0] == "k11000"


async def test_bad_rows_are_refused_whole(unique: str) -> None:
    async with opened(store(), f"a-{unique}") as s:
        c = await s.claim(aid(unique))
        for bad in (
            [("kv", "ok", b"1"), ("kv", 3, b"x")],
            [("kv", "ok", b"1"), ("kv", "s", "str")],
        ):
            with pytest.raises(StoreError):
                await s.commit(c, bad)  # type: ignore[arg-type]
        assert await s.list(c, "kv") == []


async def test_no_server_is_a_clear_error_after_a_bounded_retry() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = ScyllaStore([f"127.0.0.1:{port}"], CQL_KEYSPACE, connect_timeout=1.5)
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}"):
        await s.open("nobody")
    assert 1.0 <= time.monotonic() - t0 < 15


# ------------------------------------------------------------ unknown outcomes


class LostReply:
    """Wraps a store's bridge: the next request goes to the server (or not), and its
    caller gets a timeout instead of the answer, as when a connection drops."""

    def __init__(self, s: ScyllaStore, send: bool) -> None:
        self.inner = s._bridge
        self.send = send
        self.loop = s._bridge.loop  # type: ignore[union-attr]
        self.armed = True

    def run(self, query: Any, params: Any = None, profile: Any = None,
            **kw: Any) -> asyncio.Future[Any]:
        from cassandra import OperationTimedOut

        if profile is not None:
            kw["profile"] = profile
        if not self.armed:
            return self.inner.run(query, params, **kw)  # type: ignore[union-attr]
        self.armed = False
        lost: asyncio.Future[Any] = self.loop.create_future()

        def fail(_: Any) -> None:
            lost.set_exception(OperationTimedOut("reply lost (test)"))

        if self.send:
            self.inner.run(query, params, **kw).add_done_callback(fail)  # type: ignore[union-attr]
        else:
            self.loop.call_soon(fail, None)
        return lost


@pytest.mark.parametrize("sent", [True, False])
async def test_unknown_commit_outcome_is_resolved_not_guessed(unique: str, sent: bool) -> None:
    async with opened(store(), f"a-{unique}") as s:
        c = await s.claim(aid(unique))
        s._bridge = LostReply(s, send=sent)  # type: ignore[assignment]
        rows = [("kv", f"k{i}", b"v") for i in range(100)]
        if sent:  # it applied: success, although the reply was lost
            await s.commit(c, rows)
        else:  # it never ran: a clear failure, and nothing is there
            with pytest.raises(CommitFailed, match="did not apply"):
                await s.commit(c, rows)
        assert len(await s.list(c, "kv", limit=1000)) == (100 if sent else 0)
        await s.commit(c, [("kv", "after", b"1")])  # the claim is still current


@pytest.mark.parametrize("sent", [True, False])
async def test_unknown_claim_outcome_is_resolved(unique: str, sent: bool) -> None:
    async with opened(store(), f"a-{unique}") as s:
        s._bridge = LostReply(s, send=sent)  # type: ignore[assignment]
        c = await s.claim(aid(unique))
        assert c.epoch == 1  # applied once either way: never claimed twice
        assert await s.owner_of(aid(unique)) == (c.node_id, 1)


# ------------------------------------------------------------ liveness


async def test_a_peer_that_stops_heartbeating_loses_its_actors_after_the_lease(
    unique: str,
) -> None:
    actor = aid(unique)
    async with opened(store(heartbeat_interval=0.2), f"a-{unique}") as a:
        async with opened(store(heartbeat_interval=0.2, lease=1.5), f"b-{unique}") as b:
            old = await a.claim(actor)
            await asyncio.sleep(0.5)
            with pytest.raises(NotOwner):  # a is heartbeating
                await b.claim(actor)
            assert a._beat_task is not None
            a._beat_task.cancel()  # a hangs: its counter stops
            deadline = time.monotonic() + 10
            while True:
                try:
                    new = await b.claim(actor)
                    break
                except NotOwner:
                    assert time.monotonic() < deadline, "the lease never ran out"
                    await asyncio.sleep(0.2)
            assert new.epoch == old.epoch + 1
            with pytest.raises(StaleEpoch):
                await a.commit(old, [("kv", "late", b"x")])
            alive = {n.node_id: n.alive for n in await b.nodes()}
            assert alive[f"a-{unique}"] is False and alive[f"b-{unique}"] is True


# ------------------------------------------------------------ a server killed under load


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def own_cassandra(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A second Cassandra node of our own (separate port and data), stopped afterwards."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("java is not installed: cannot start a Cassandra of our own")
    env = dict(os.environ)
    env.update(
        DNA_CASSANDRA_PORT=str(_free_port()),
        DNA_CASSANDRA_STORAGE_PORT=str(_free_port()),
        DNA_CASSANDRA_WORK=str(tmp_path / "cassandra"),
        DNA_CASSANDRA_HEAP="512M",
    )
    subprocess.run(["bash", str(CASSANDRA_SH), "start"], env=env, check=True, timeout=240)
    try:
        yield env
    finally:
        subprocess.run(["bash", str(CASSANDRA_SH), "stop"], env=env, timeout=120)


async def _script(env: dict[str, str], command: str) -> None:
    proc = await asyncio.create_subprocess_exec("bash", str(CASSANDRA_SH), command, env=env)
    assert await proc.wait() == 0, f"cassandra.sh {command} failed"


async def _until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_server_killed_and_restarted_under_commits(
    own_cassandra: dict[str, str], unique: str
) -> None:
    env = own_cassandra
    host = f"127.0.0.1:{env['DNA_CASSANDRA_PORT']}"
    s = ScyllaStore([host], "dna_fault", request_timeout=2.0, resolve_timeout=2.0)
    async with opened(s, f"a-{unique}"):
        c = await s.claim(aid(unique))
        acked: dict[str, bytes] = {}  # every write whose commit returned
        errors: list[StoreError] = []
        stop = asyncio.Event()

        async def writer() -> None:
            i = 0
            while not stop.is_set():
                rows = [("kv", f"{i:06d}-{j}", b"%d" % i) for j in range(20)]
                try:
                    await s.commit(c, rows)
                except StoreError as exc:
                    errors.append(exc)
                    await asyncio.sleep(0.05)
                else:
                    acked.update((k, v) for _, k, v in rows)
                i += 1

        task = asyncio.get_running_loop().create_task(writer())
        await _until(lambda: len(acked) >= 400, 20, "commits before the kill")
        await _script(env, "kill")
        down = len(errors)
        await _until(lambda: len(errors) > down + 3, 20, "errors while the server is down")
        assert all(isinstance(e, StoreUnavailable) for e in errors[down:]), errors[down:]
        await _script(env, "start")
        resumed = len(acked)
        await _until(lambda: len(acked) >= resumed + 400, 60, "commits after the restart")
        stop.set()
        await task
        got = dict(await s.list(c, "kv", limit=10**6))
        missing = [k for k, v in acked.items() if got.get(k) != v]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"


async def test_the_first_releases_timer_index_is_carried_over_then_dropped(unique: str) -> None:
    """A keyspace written by the release whose due index was one partition per minute
    for every type: its entries move to the per-type index when a store opens, and
    the old tables go."""
    from cassandra.cluster import Cluster

    ks = f"dna_old_{unique}"
    host, _, port = CQL_HOSTS.split(",")[0].partition(":")
    async with opened(ScyllaStore(CQL_HOSTS.split(","), ks)):
        pass  # the keyspace and today's tables
    cluster = Cluster([host], port=int(port or 9042))
    try:
        session = cluster.connect()
        session.execute(f"CREATE TABLE {ks}.timer_due (bucket bigint, due bigint, namespace "
                        "text, type_name text, key text, name text, setting blob, PRIMARY KEY "
                        "((bucket), due, namespace, type_name, key, name, setting))")
        session.execute(f"CREATE TABLE {ks}.timer_scan (id int PRIMARY KEY, low bigint)")
        due = time.time_ns() // 1000 - 3_600_000_000  # an hour ago
        session.execute(f"INSERT INTO {ks}.timer_due (bucket, due, namespace, type_name, key, "
                        "name, setting) VALUES (%s, %s, 'ns', 'Old', %s, 't', %s)",
                        (due // 60_000_000, due, unique, b"T" * 8))
        async with opened(ScyllaStore(CQL_HOSTS.split(","), ks)) as s:
            got = await s.due_timers(time.time_ns() // 1000, 10)
            assert [(d.actor, d.name, d.due, d.token) for d in got] == [
                (ActorId("ns", "Old", unique), "t", due, b"T" * 8)]
        tables = {r[0] for r in session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (ks,))}
        assert not tables & {"timer_due", "timer_scan"}
        session.execute(f"DROP KEYSPACE {ks}")
    finally:
        cluster.shutdown()


async def test_a_finished_request_is_freed_at_once_and_never_a_garbage_cycle(
        unique: str) -> None:
    """The driver keeps a cancelled request timer in its heap until the request's
    deadline, and that timer held the whole request (its ResponseFuture, message,
    statement, event, lock): every commit and read stayed alive for the request
    timeout, traced by each collection meanwhile, and then was a garbage cycle (the
    bridge's callback arguments held the future). Both are cut once a request ends,
    so a finished request is freed by reference counting."""
    import gc

    from cassandra.cluster import ResponseFuture

    def finished() -> list[Any]:
        # type(), not isinstance(): a dead weak proxy among the objects would raise
        return [o for o in gc.get_objects()
                if type(o) is ResponseFuture and o._event.is_set()]

    async with opened(store(request_timeout=120.0), f"a-{unique}") as s:
        bridge = s._bridge
        gc.collect()
        gc.disable()
        try:
            rows = await asyncio.gather(*(bridge.run("SELECT release_version FROM system.local")
                                          for _ in range(200)))
            assert all(len(r) == 1 for r in rows)
            await asyncio.gather(*(s.claim(aid(unique, f"k{i}")) for i in range(50)))
            # the driver's thread returns from its callback just after our loop sees
            # the rows, and tells nobody: poll for that (a bound, not a pause)
            deadline = time.monotonic() + 10
            while finished() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            left = len(finished())
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            cycles = sum(type(o) is ResponseFuture for o in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert left == 0
    assert cycles == 0
