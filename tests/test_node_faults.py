"""A node on a real SQLite file whose database fails under it, and stores that
cannot be opened: callers get clear errors, acknowledged writes survive, the
node keeps running."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import dna
from dna.errors import CommitFailed, StoreError, StoreUnavailable
from dna.examples import KVActor


async def test_read_only_database_fails_gated_puts_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    async with dna.Node(store=dna.SQLiteStore(str(path))) as node:
        ref = node.ref(KVActor, "acct")
        for i in range(50):
            assert await ref.put(str(i), i) == "ok"
        os.chmod(path, 0o444)
        try:
            results = await asyncio.gather(
                *(ref.put(f"lost-{i}", i) for i in range(20)), return_exceptions=True
            )
            assert all(isinstance(r, CommitFailed) for r in results), results
        finally:
            os.chmod(path, 0o644)
        # the node kept running; the activation restarts from storage (a restart
        # that met the read-only file fails retryably: callers retry)
        for _ in range(50):
            try:
                assert await ref.put("after", 1) == "ok"
                break
            except dna.errors.Retryable:
                await asyncio.sleep(0.02)
        else:
            pytest.fail("the node did not recover once the file was writable again")
        assert await ref.get("lost-3") is None
    async with dna.Node(store=dna.SQLiteStore(str(path))) as node:
        ref = node.ref(KVActor, "acct")
        for i in range(50):
            assert await ref.get(str(i)) == i
        assert await ref.get("after") == 1


@pytest.mark.parametrize("content", [b"this is not a database" * 100, b""])
async def test_store_path_holding_something_else(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "other.db"
    path.write_bytes(content)
    node = dna.Node(store=dna.SQLiteStore(str(path)))
    if not content:  # an empty file is a new database
        async with node:
            assert await node.ref(KVActor, "x").put("k", 1) == "ok"
        return
    with pytest.raises(StoreError, match=r"other\.db"):
        await node.start()
    assert path.read_bytes() == content  # left untouched


async def test_store_path_that_cannot_be_opened(tmp_path: Path) -> None:
    node = dna.Node(store=dna.SQLiteStore(str(tmp_path / "missing-dir" / "dna.db")))
    with pytest.raises(StoreUnavailable, match="missing-dir"):
        await node.start()


async def test_memory_store_nodes_form_a_cluster_in_one_process(unique: str) -> None:
    a = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s")
    b = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s")
    async with a, b:
        assert await a.ref(KVActor, "k").put("x", 1) == "ok"
        assert await b.ref(KVActor, "k").get("x") == 1  # forwarded to a over TCP
        assert (a.activations, b.activations) == (1, 0)
