"""Real node processes on loopback sharing one store: routing, single activation,
failover after kill -9, draining, and bad peers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import CQL_HOSTS, CQL_KEYSPACE, NO_CQL_REASON

import dna
from dna.examples import KVActor

DRIVER = str(Path(__file__).with_name("cluster_driver.py"))
SECRET = "cluster-secret-for-tests"
# the driver imports the same dna as this process (the installed wheel in CI)
ROOT = str(Path(dna.__file__).resolve().parent.parent)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """One driver process; ``ask`` sends a command and returns its JSON reply."""

    def __init__(self, spec: dict[str, Any], secret: str = SECRET) -> None:
        self.port = free_port()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [ROOT, env.get("PYTHONPATH", "")] if p)
        self.p = subprocess.Popen(
            [sys.executable, DRIVER, json.dumps(spec), f"127.0.0.1:{self.port}", secret],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        hello = self.read()
        self.node_id = hello["ready"]
        self.address = hello["address"]

    def read(self) -> dict[str, Any]:
        assert self.p.stdout is not None
        line = self.p.stdout.readline()
        if not line:
            raise AssertionError(f"driver exited with {self.p.wait()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def send(self, **cmd: Any) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()

    def ask(self, **cmd: Any) -> dict[str, Any]:
        self.send(**cmd)
        return self.read()

    async def aask(self, **cmd: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.ask, **cmd)

    def close(self) -> None:
        if self.p.poll() is None:
            try:
                self.send(op="stop")
                self.p.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
                self.p.wait()
        for pipe in (self.p.stdin, self.p.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass


LEASE = 3.0  # CQL lease in these tests: short, so failover tests stay quick


@pytest.fixture(params=["sqlite", "sqlite-log", pytest.param("cql", marks=pytest.mark.cql)])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    procs: list[Proc] = []
    spec: dict[str, Any]
    if request.param.startswith("sqlite"):  # sqlite-log: the log-first commit path
        spec = {"kind": "sqlite", "path": str(tmp_path / "cluster.db"),
                "commit": "log" if request.param == "sqlite-log" else "apply"}
    else:
        if not CQL_HOSTS:
            pytest.skip(NO_CQL_REASON)
        spec = {"kind": "cql", "hosts": CQL_HOSTS.split(","), "keyspace": CQL_KEYSPACE,
                "lease": LEASE, "heartbeat": 0.3}

    def start(n: int, secret: str = SECRET) -> list[Proc]:
        new = [Proc(spec, secret) for _ in range(n)]
        procs.extend(new)
        return new

    start.spec = spec  # type: ignore[attr-defined]
    yield start
    for p in procs:
        p.close()


async def owner_of(spec: dict[str, Any], key: str) -> tuple[str | None, int]:
    if spec["kind"] == "sqlite":
        store: Any = dna.SQLiteStore(spec["path"])
    else:
        store = dna.ScyllaStore(hosts=spec["hosts"], keyspace=spec["keyspace"])
    await store.open("observer-" + os.urandom(4).hex())
    try:
        return await store.owner_of(dna.ActorId("default", KVActor.type_name, key))
    finally:
        await store.close()


async def test_calls_from_every_node_reach_one_activation(cluster: Any, unique: str) -> None:
    a, b, c = cluster(3)
    room = f"room-{unique}"
    assert (await a.aask(op="call", key=room, h="put", args=["x", 1]))["ok"] == "ok"
    assert (await b.aask(op="call", key=room, h="get", args=["x"]))["ok"] == 1
    assert (await c.aask(op="call", key=room, h="put", args=["y", 2]))["ok"] == "ok"
    assert (await a.aask(op="call", key=room, h="get", args=["y"]))["ok"] == 2
    for i in range(20):  # ordering across forwarding
        await c.aask(op="call", key=room, h="put", args=["z", i])
    assert (await b.aask(op="call", key=room, h="get", args=["z"]))["ok"] == 19
    counts = [(await p.aask(op="info"))["activations"] for p in (a, b, c)]
    assert counts == [1, 0, 0]  # a activated it first; b and c forwarded
    owner, epoch = await owner_of(cluster.spec, room)
    assert owner == a.node_id and epoch == 1


async def test_kill_9_owner_fails_over_without_losing_acknowledged_puts(
    cluster: Any, unique: str
) -> None:
    a, b = cluster(2)
    acct = f"acct-{unique}"
    assert (await a.aask(op="call", key=acct, h="put", args=["0", 0]))["ok"] == "ok"
    b.send(op="stream", key=acct, n=3000 if cluster.spec["kind"] == "sqlite" else 300,
           start=1, seconds=60)
    assert (await asyncio.to_thread(b.read))["started"] == 20  # mid-stream, not before it
    a.p.send_signal(signal.SIGKILL)
    a.p.wait()
    result = await asyncio.to_thread(b.read)
    assert len(result["acked"]) == (3000 if cluster.spec["kind"] == "sqlite" else 300), result
    assert result["errors"], "the kill should have failed some in-flight calls"
    owner, epoch = await owner_of(cluster.spec, acct)
    assert owner == b.node_id and epoch == 2
    for i in [*result["acked"][::37], result["acked"][-1]]:
        assert (await b.aask(op="call", key=acct, h="get", args=[str(i)]))["ok"] == i


async def test_a_kept_ref_works_again_after_its_owner_is_killed(
    cluster: Any, unique: str
) -> None:
    a, b = cluster(2)
    key = f"kept-{unique}"
    assert (await a.aask(op="call", key=key, h="put", args=["v", 1]))["ok"] == "ok"
    # b keeps one ref (and its senders) for the whole test, as a client would
    assert (await b.aask(op="kcall", key=key, h="put", args=["v", 2]))["ok"] == "ok"
    assert (await b.aask(op="kcall", key=key, h="get", args=["v"]))["ok"] == 2
    a.p.send_signal(signal.SIGKILL)
    a.p.wait()
    # within the failover time (SQLite: at once; CQL: the lease) the same ref works again
    failover = 10.0 if cluster.spec["kind"] == "sqlite" else 4 * LEASE + 5
    deadline = asyncio.get_running_loop().time() + failover
    errors = []
    while True:
        got = await b.aask(op="kcall", key=key, h="get", args=["v"], timeout=2.0)
        if "ok" in got:
            break
        errors.append(got)
        assert got["retryable"], got
        assert asyncio.get_running_loop().time() < deadline, errors[-3:]
        await asyncio.sleep(0.1)
    assert got["ok"] == 2
    assert (await b.aask(op="kcall", key=key, h="put", args=["v", 3]))["ok"] == "ok"
    assert (await b.aask(op="kcall", key=key, h="get", args=["v"]))["ok"] == 3


async def test_drain_hands_actors_over_at_once(cluster: Any, unique: str) -> None:
    a, b = cluster(2)
    keys = [f"d{i}-{unique}" for i in range(3)]
    for key in keys:
        assert (await a.aask(op="call", key=key, h="put", args=["v", key]))["ok"] == "ok"
    assert (await a.aask(op="drain"))["drained"]
    for key in keys:
        got = await b.aask(op="call", key=key, h="get", args=["v"], timeout=2.0)
        assert got == {"ok": key}
    owner, epoch = await owner_of(cluster.spec, keys[0])
    assert owner == b.node_id and epoch == 2


async def test_wrong_secret_and_garbage_are_refused_node_keeps_serving(
    cluster: Any, unique: str
) -> None:
    sec = f"sec-{unique}"
    (a,) = cluster(1)
    host, port = a.address.rsplit(":", 1)
    # garbage bytes
    r, w = await asyncio.open_connection(host, int(port))
    w.write(os.urandom(4096))
    await w.drain()
    await asyncio.wait_for(r.read(), 10)  # returns only at EOF: the node closed it
    assert r.at_eof()
    w.close()
    # a peer with the wrong secret cannot get a message through: its handshake fails,
    # so its call cannot reach a (the put below is the only write)
    (bad,) = cluster(1, secret="wrong")
    assert (await a.aask(op="call", key=sec, h="put", args=["k", 1]))["ok"] == "ok"
    got = await bad.aask(op="call", key=sec, h="put", args=["k", 666], timeout=3.0)
    assert got.get("error") == "ProtocolError", got
    assert "authentication failed" in got["message"], got
    assert (await a.aask(op="call", key=sec, h="get", args=["k"]))["ok"] == 1
    # the node still serves well-behaved peers
    (good,) = cluster(1)
    assert (await good.aask(op="call", key=sec, h="get", args=["k"]))["ok"] == 1


async def test_paused_owner_loses_the_name_and_its_late_commits_are_refused(
    cluster: Any, unique: str
) -> None:
    if cluster.spec["kind"] != "cql":
        pytest.skip("SQLite liveness is an OS lock a paused process keeps: nobody takes over")
    a, b = cluster(2)
    key = f"paused-{unique}"
    assert (await a.aask(op="call", key=key, h="put", args=["0", 0]))["ok"] == "ok"
    b.send(op="stream", key=key, n=400, start=1, seconds=60)
    assert (await asyncio.to_thread(b.read))["started"] == 20  # mid-stream, not before it
    a.p.send_signal(signal.SIGSTOP)
    await asyncio.sleep(2 * LEASE + 1)  # b must watch a full lease pass on its own clock
    a.p.send_signal(signal.SIGCONT)
    result = await asyncio.to_thread(b.read)
    assert len(result["acked"]) == 400, result["errors"]
    assert result["errors"], "calls to the paused owner should have failed meanwhile"
    owner, epoch = await owner_of(cluster.spec, key)
    assert owner == b.node_id and epoch == 2
    # the woken node fenced itself: it serves nothing from its old activation
    deadline = asyncio.get_running_loop().time() + 5.0
    while (await a.aask(op="info"))["activations"]:
        assert asyncio.get_running_loop().time() < deadline, "the woken node kept its actors"
        await asyncio.sleep(0.05)
    # every acknowledged put is in the store, and a rejoins: its calls route to b
    for i in [0, *result["acked"][::23], result["acked"][-1]]:
        assert (await a.aask(op="call", key=key, h="get", args=[str(i)]))["ok"] == i


async def test_a_node_woken_past_its_lease_never_answers_from_its_old_activation(
    cluster: Any, unique: str
) -> None:
    if cluster.spec["kind"] != "cql":
        pytest.skip("SQLite liveness is an OS lock a paused process keeps: nobody takes over")
    a, b = cluster(2)
    # reads reach the woken node at once (before its first heartbeat after the pause
    # returns) or a little later (after it did): neither may see the old activation
    for rnd, delay in enumerate([0.0, 0.15, 0.4, 0.8]):
        key = f"woken-{rnd}-{unique}"
        # a owns it (right after the last round a may still be fencing: retry)
        got = await a.aask(op="mput_until", key=key, value=1, seconds=6 * LEASE)
        assert got.get("ok") == "ok", got
        a.p.send_signal(signal.SIGSTOP)
        try:
            deadline = asyncio.get_running_loop().time() + 6 * LEASE
            while True:  # b takes over once a's lease ran out on b's clock, and writes
                got = await b.aask(op="mput", key=key, value=2)
                if got.get("ok") == "ok":
                    break
                assert asyncio.get_running_loop().time() < deadline, got
                await asyncio.sleep(0.2)
            if not delay:
                a.send(op="mgets", key=key, n=40)  # queued before a wakes
        finally:
            a.p.send_signal(signal.SIGCONT)
        if delay:
            await asyncio.sleep(delay)
            a.send(op="mgets", key=key, n=40)
        answers = (await asyncio.to_thread(a.read))["answers"]
        stale = [x for x in answers if x.get("ok") == 1]
        assert not stale, f"round {rnd}: {len(stale)} stale answers: {answers[:5]}"
        assert all(x.get("ok") == 2 or x.get("retryable") for x in answers), answers
        assert any(x.get("ok") == 2 for x in answers), answers


async def test_a_loop_blocked_past_its_lease_never_answers_from_its_old_activation(
    unique: str,
) -> None:
    """The stall is this process's own event loop (blocked, as by a long GC pause) while
    the database driver's thread runs on: the answer to a heartbeat sent just before
    the stall arrives during it, so it must not make the lapsed lease look fresh."""
    if not CQL_HOSTS:
        pytest.skip(NO_CQL_REASON)
    from tests.cluster_driver import MemKV

    spec = {"kind": "cql", "hosts": CQL_HOSTS.split(","), "keyspace": CQL_KEYSPACE,
            "lease": LEASE, "heartbeat": 0.3}
    b = Proc(spec)
    store = dna.ScyllaStore(hosts=spec["hosts"], keyspace=CQL_KEYSPACE, lease=LEASE,
                            heartbeat_interval=0.3)
    node = dna.Node(store=store, listen="127.0.0.1:0", secret=SECRET.encode())
    try:
        async with node:
            # the first read comes right after the stall, or once the stalled
            # heartbeat's answer (and the sweeper's next look) had their turn
            for rnd, delay in enumerate([0.0, 0.05, 0.3]):
                key = f"blocked-{rnd}-{unique}"
                ref = node.ref(MemKV, key)
                assert await ref.put(1) == "ok"
                beat = asyncio.ensure_future(store.heartbeat())
                await asyncio.sleep(0)  # the heartbeat is on its way to the server
                b.send(op="mput_until", key=key, value=2, seconds=6 * LEASE)
                got = b.read()  # blocks this loop until b took the actor over and wrote
                assert got.get("ok") == "ok", got
                if delay:
                    await asyncio.sleep(delay)
                answers = []
                for _ in range(20):
                    try:
                        answers.append(await ref.get())
                    except dna.errors.Retryable as exc:
                        answers.append(type(exc).__name__)
                assert 1 not in answers, answers
                assert 2 in answers, answers
                await asyncio.gather(beat, return_exceptions=True)
    finally:
        b.close()


async def test_dna_status_lists_live_nodes(cluster: Any, unique: str) -> None:
    a, b = cluster(2)
    spec = cluster.spec
    if spec["kind"] == "sqlite":
        args = ["--store", "sqlite", "--path", spec["path"]]
    else:
        args = ["--store", "cql", "--hosts", ",".join(spec["hosts"]), "--keyspace",
                spec["keyspace"]]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [ROOT, env.get("PYTHONPATH", "")] if p)
    assert (await a.aask(op="call", key=f"status-{unique}", h="put", args=["k", 1]))["ok"]
    for _ in range(40):  # nodes publish their activation count every sweep (~1 s)
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "dna", "status", "--json", *args],
            capture_output=True, text=True, env=env, check=True,
        )
        rows = {r["node_id"]: r for r in json.loads(out.stdout)}
        if rows.get(a.node_id, {}).get("activations") == 1:
            break
        await asyncio.sleep(0.25)
    for p in (a, b):
        assert rows[p.node_id]["address"] == p.address
        assert rows[p.node_id]["draining"] is False
        assert rows[p.node_id]["alive"] is not False
    assert rows[a.node_id]["activations"] == 1
    assert rows[b.node_id]["activations"] == 0


RETRYABLE = {"Timeout", "NotOwner", "PeerUnavailable", "StoreUnavailable", "CommitFailed",
             "StaleEpoch", "Overloaded"}


async def test_drain_under_load_fails_nothing_but_retryably(cluster: Any, unique: str) -> None:
    a, b = cluster(2)
    key = f"busy-{unique}"
    assert (await a.aask(op="call", key=key, h="put", args=["0", 0]))["ok"] == "ok"
    n = 2000 if cluster.spec["kind"] == "sqlite" else 300
    b.send(op="stream", key=key, n=n, start=1, seconds=60)
    assert (await asyncio.to_thread(b.read))["started"] == 20  # mid-stream, not before it
    assert (await a.aask(op="drain"))["drained"]
    result = await asyncio.to_thread(b.read)
    assert len(result["acked"]) == n, result["errors"]
    assert set(result["errors"]) <= RETRYABLE, result["errors"]
    owner, _ = await owner_of(cluster.spec, key)
    assert owner == b.node_id
    for i in [0, *result["acked"][::41], result["acked"][-1]]:
        assert (await b.aask(op="call", key=key, h="get", args=[str(i)]))["ok"] == i
