"""The slot path (``activation=slots``) with real ``dna`` node processes on one
CQL keyspace: kill -9 of a node holding slots, and a node stopped (SIGSTOP) past
its lease and woken. Every acknowledged write must be readable afterwards and no
answer may come from a stale activation. The drivers are test_cluster's."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
from tests.conftest import CQL_HOSTS, CQL_KEYSPACE, NO_CQL_REASON
from tests.test_cluster import LEASE, Proc

import dna
from dna.examples import KVActor
from dna.store.cql._slots import slot_of

pytestmark = [pytest.mark.cql, pytest.mark.skipif(not CQL_HOSTS, reason=NO_CQL_REASON)]

KEYSPACE = f"{CQL_KEYSPACE}_slots"[:48]  # shared with the other slot tests


@pytest.fixture
def cluster() -> Any:
    procs: list[Proc] = []
    spec = {"kind": "cql", "hosts": CQL_HOSTS.split(","), "keyspace": KEYSPACE,
            "lease": LEASE, "heartbeat": 0.3, "activation": "slots"}

    def start(n: int) -> list[Proc]:
        new = [Proc(spec) for _ in range(n)]
        procs.extend(new)
        return new

    yield start
    for p in procs:
        p.close()


async def holder_of(key: str) -> tuple[str | None, int]:
    store = dna.ScyllaStore(hosts=CQL_HOSTS.split(","), keyspace=KEYSPACE, activation="slots")
    await store.open("observer-" + key)
    try:
        return await store.owner_of(dna.ActorId("default", KVActor.type_name, key))
    finally:
        await store.close()


async def same_slot_key(key: str, unique: str) -> str:
    """A KVActor key of the same slot as ``key`` (by the keyspace's slot count)."""
    store = dna.ScyllaStore(hosts=CQL_HOSTS.split(","), keyspace=KEYSPACE, activation="slots")
    await store.open("observer-slot-" + unique)
    try:
        assert store._slots is not None
        count = store._slots.count
    finally:
        await store.close()
    want = slot_of(dna.ActorId("default", KVActor.type_name, key), count)
    i = 0
    while slot_of(dna.ActorId("default", KVActor.type_name, f"{key}-{i}"), count) != want:
        i += 1
    return f"{key}-{i}"


async def check_every_ack(node: Proc, key: str, acked: list[int]) -> None:
    """Every acknowledged put of ``key`` reads back, through ``node``."""
    for i in acked:
        got = await node.aask(op="call", key=key, h="get", args=[str(i)], timeout=5.0)
        assert got.get("ok") == i, (i, got)


async def test_kill_9_of_a_slot_holder_loses_no_acknowledged_write(
    cluster: Any, unique: str
) -> None:
    a, b = cluster(2)
    keys = [f"k9-{unique}-{i}" for i in range(3)]
    for key in keys:  # a activates them first: it takes their slots
        assert (await a.aask(op="call", key=key, h="put", args=["0", 0]))["ok"] == "ok"
    assert (await holder_of(keys[0]))[0] == a.node_id
    b.send(op="stream", key=keys[0], n=300, start=1, seconds=60)
    assert (await asyncio.to_thread(b.read))["started"] == 20  # mid-stream, not before it
    a.p.send_signal(signal.SIGKILL)
    a.p.wait()
    result = await asyncio.to_thread(b.read)
    assert len(result["acked"]) == 300, result
    assert result["errors"], "the kill should have failed some in-flight calls"
    assert (await holder_of(keys[0]))[0] == b.node_id  # the slot passed on
    await check_every_ack(b, keys[0], [0, *result["acked"]])
    for key in keys[1:]:  # the dead node's other actors answer from the store
        assert (await b.aask(op="call", key=key, h="get", args=["0"]))["ok"] == 0


async def test_a_slot_holder_paused_past_its_lease_never_answers_stale(
    cluster: Any, unique: str
) -> None:
    a, b = cluster(2)
    key = f"paused-{unique}"
    assert (await a.aask(op="call", key=key, h="put", args=["0", 0]))["ok"] == "ok"
    b.send(op="stream", key=key, n=300, start=1, seconds=60)
    assert (await asyncio.to_thread(b.read))["started"] == 20
    a.p.send_signal(signal.SIGSTOP)
    try:  # the stream ends only once b took the slot (a's lease ran out on b's clock)
        result = await asyncio.to_thread(b.read)
    finally:
        a.p.send_signal(signal.SIGCONT)
    assert len(result["acked"]) == 300, result["errors"]
    assert result["errors"], "calls to the paused holder should have failed meanwhile"
    assert (await holder_of(key))[0] == b.node_id
    # the woken node fenced itself: no activation of its old lease survives
    deadline = asyncio.get_running_loop().time() + 5.0
    while (await a.aask(op="info"))["activations"]:
        assert asyncio.get_running_loop().time() < deadline, "the woken node kept its actors"
        await asyncio.sleep(0.05)
    await check_every_ack(a, key, [0, *result["acked"][::7], result["acked"][-1]])
    await check_every_ack(b, key, [0, *result["acked"][::11]])
    # another actor of the same slot, never touched by b: the woken node must not
    # activate it under its old lease (two live activations), but send it to b
    other = await same_slot_key(key, unique)
    assert (await a.aask(op="call", key=other, h="put", args=["x", 1]))["ok"] == "ok"
    assert (await a.aask(op="info"))["activations"] == 0
    assert (await b.aask(op="call", key=other, h="get", args=["x"]))["ok"] == 1


async def test_a_woken_slot_holder_never_answers_from_its_old_activation(
    cluster: Any, unique: str
) -> None:
    """MemKV answers from memory: a stale activation on the woken node would answer
    1 after the new holder's activation was given 2."""
    a, b = cluster(2)
    for rnd, delay in enumerate([0.0, 0.4]):
        key = f"woken-{rnd}-{unique}"
        got = await a.aask(op="mput_until", key=key, value=1, seconds=6 * LEASE)
        assert got.get("ok") == "ok", got
        a.p.send_signal(signal.SIGSTOP)
        try:
            deadline = asyncio.get_running_loop().time() + 8 * LEASE
            while True:
                got = await b.aask(op="mput", key=key, value=2)
                if got.get("ok") == "ok":
                    break
                assert asyncio.get_running_loop().time() < deadline, got
                await asyncio.sleep(0.2)
            if not delay:
                a.send(op="mgets", key=key, n=40)
        finally:
            a.p.send_signal(signal.SIGCONT)
        if delay:
            await asyncio.sleep(delay)
            a.send(op="mgets", key=key, n=40)
        answers = (await asyncio.to_thread(a.read))["answers"]
        # until a's next heartbeat lands its calls fail fast (retryable); then they
        # go to b: every answer is checked, none may come from a's old activation
        deadline = asyncio.get_running_loop().time() + 4 * LEASE
        while not any(x.get("ok") == 2 for x in answers):
            assert asyncio.get_running_loop().time() < deadline, answers[-5:]
            answers += (await a.aask(op="mgets", key=key, n=5))["answers"]
        stale = [x for x in answers if x.get("ok") == 1]
        assert not stale, f"round {rnd}: {len(stale)} stale answers: {answers[:5]}"
        assert all(x.get("ok") == 2 or x.get("retryable") for x in answers), answers
