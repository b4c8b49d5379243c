"""Durable timers across real node processes on one store (a SQLite file, and
Cassandra): the owner killed with ``kill -9``, drained, or stopped and
replaced; the timers fire on the surviving node, each effect exactly once,
never before the due time."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import CQL_HOSTS, CQL_KEYSPACE, NO_CQL_REASON
from tests.test_cluster import LEASE, ROOT, SECRET, Proc, free_port

DRIVER = str(Path(__file__).with_name("timer_driver.py"))
N = 20  # timers per test
AHEAD = 1.5  # seconds from arming to due: time enough to kill, drain or stop the owner


class TimerProc(Proc):
    """A timer_driver.py process (the cluster driver's protocol: ``ask``, ``close``)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.port = free_port()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [ROOT, env.get("PYTHONPATH", "")] if p)
        self.p = subprocess.Popen(
            [sys.executable, DRIVER, json.dumps(spec), f"127.0.0.1:{self.port}", SECRET],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        hello = self.read()
        self.node_id = hello["ready"]
        self.address = hello["address"]


@pytest.fixture(params=["sqlite", "sqlite-log", pytest.param("cql", marks=pytest.mark.cql)])
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    procs: list[TimerProc] = []
    if request.param.startswith("sqlite"):  # sqlite-log: the log-first commit path
        spec: dict[str, Any] = {"kind": "sqlite", "path": str(tmp_path / "timers.db"),
                                "commit": "log" if request.param == "sqlite-log" else "apply"}
    else:
        if not CQL_HOSTS:
            pytest.skip(NO_CQL_REASON)
        spec = {"kind": "cql", "hosts": CQL_HOSTS.split(","), "keyspace": CQL_KEYSPACE,
                "lease": LEASE, "heartbeat": 0.3}

    def start(n: int) -> list[TimerProc]:
        new = [TimerProc(spec) for _ in range(n)]
        procs.extend(new)
        return new

    yield start
    for p in procs:
        p.close()


async def arm(owner: TimerProc, key: str) -> float:
    at = time.time() + AHEAD
    assert (await owner.aask(op="arm", key=key, n=N, at=at)) == {"ok": N}
    return at


async def check_fired_on(survivor: TimerProc, key: str, at: float) -> None:
    """Poll the surviving process (another process: polling with a deadline) until
    its scanner fired the timers, then check each effect landed once, never early."""
    deadline = time.monotonic() + 60
    while (await survivor.aask(op="info"))["ok"]["fired"] < N:
        assert time.monotonic() < deadline, "the timers did not fire on the survivor"
        await asyncio.sleep(0.05)
    got = (await survivor.aask(op="effects", key=key))["ok"]
    assert sorted(e[0] for e in got) == [f"t{i:03d}" for i in range(N)]  # each exactly once
    assert {e[1] for e in got} == {survivor.node_id}
    assert min(e[2] for e in got) >= at
    assert (await survivor.aask(op="pending", key=key)) == {"ok": []}


@pytest.mark.timeout(180)
async def test_timers_fire_after_their_owner_is_killed(nodes: Any, unique: str) -> None:
    a, b = nodes(2)
    key = f"kill-{unique}"
    at = await arm(a, key)  # a owns the actor now
    os.kill(a.p.pid, signal.SIGKILL)
    a.p.wait()
    await check_fired_on(b, key, at)


@pytest.mark.timeout(180)
async def test_timers_fire_after_their_owner_is_drained(nodes: Any, unique: str) -> None:
    a, b = nodes(2)
    key = f"drain-{unique}"
    at = await arm(a, key)
    assert await a.aask(op="drain") == {"drained": True}
    await check_fired_on(b, key, at)


@pytest.mark.timeout(180)
async def test_timers_survive_a_restart_of_the_only_node(nodes: Any, unique: str) -> None:
    (a,) = nodes(1)
    key = f"restart-{unique}"
    at = await arm(a, key)
    a.close()  # a clean stop before they are due
    (b,) = nodes(1)
    await check_fired_on(b, key, at)
