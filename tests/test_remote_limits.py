"""Size limits between real node processes: a message no frame could carry fails at
its sender with ``TooLarge``, however deeply its bytes are nested, for calls and
casts alike, and nothing of it reaches the owner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.test_cluster import SECRET, Proc

import dna
from dna.examples import KVActor

MiB = 1024 * 1024


@pytest.fixture
def host(tmp_path: Path) -> Any:
    proc = Proc({"kind": "sqlite", "path": str(tmp_path / "limits.db")})
    yield proc
    proc.close()


def nested(kind: str) -> Any:
    big = b"x" * (17 * MiB)
    return {"list": [big], "dict": {"k": [1, {"v": big}]},
            "strs": ["y" * (MiB // 2)] * 34, "tuple": (b"", (big,))}[kind]


@pytest.mark.parametrize("kind", ["list", "dict", "strs", "tuple"])
async def test_a_nested_message_over_the_frame_limit_fails_at_the_sender(
    host: Proc, tmp_path: Path, kind: str
) -> None:
    client = dna.Node(store=dna.SQLiteStore(str(tmp_path / "limits.db")),
                      listen="127.0.0.1:0", secret=SECRET.encode(), host_actors=False)
    async with client:
        await client.cluster.refresh_peers()
        ref = client.ref(KVActor, "k")
        assert await ref.put("before", 1) == "ok"  # the owner is the other process
        assert host.ask(op="info")["activations"] == 1
        value = nested(kind)
        with pytest.raises(dna.errors.TooLarge, match="nothing was sent"):
            await ref.put("big", value)
        with pytest.raises(dna.errors.TooLarge, match="nothing was sent"):
            await ref.put_cast("big", value)
        with pytest.raises(dna.errors.TooLarge, match="nothing was sent"):
            ref.put_cast.nowait("big", value)
        with pytest.raises(dna.errors.TooLarge, match="nothing was sent"):
            await ref.put("big", value=value)  # type: ignore[call-arg]
        assert await ref.put("after", 2) == "ok"  # gated: every cast before it is in
        assert await ref.get("big") is None
        assert host.ask(op="call", key="k", h="get", args=["after"]) == {"ok": 2}
