"""SQLite on a full disk (a real tmpfs of a few MiB): reading an actor needs a claim,
which is a write; it must still work, and writes that need room fail clearly and
retryably, then work again once room is freed."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dna
from dna.examples import KVActor


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "fs"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(where: Path) -> Path:
    """Takes every free byte of the file system; returns the file holding them."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert os.statvfs(where).f_bavail == 0
    return filler


async def idle(node: dna.Node) -> None:
    """Until every activation passivated: the next message must claim again."""
    deadline = time.monotonic() + 10.0
    while node.activations:
        assert time.monotonic() < deadline, "activations not passivated in time"
        await asyncio.sleep(0.02)


async def test_reads_work_on_a_full_disk_and_writes_fail_retryably(small_fs: Path) -> None:
    db = small_fs / "app.db"
    async with dna.Node(store=dna.SQLiteStore(str(db)), passivate_after=0.2) as node:
        for key in ("a", "b"):
            assert await node.ref(KVActor, key).put("k", key.encode()) == "ok"
        await idle(node)
        filler = fill(small_fs)
        # before: StoreUnavailable "database or disk is full" for every read
        assert await node.ref(KVActor, "a").get("k") == b"a"
        assert await node.ref(KVActor, "b").get("k") == b"b"
        with pytest.raises(dna.errors.DNAError, match="disk is full") as err:
            await node.ref(KVActor, "a").put("big", b"x" * 1_000_000)
        assert isinstance(err.value, dna.errors.Retryable)
        await idle(node)
        assert await node.ref(KVActor, "a").get("k") == b"a"  # claimed again, still full
        filler.unlink()
        assert await node.ref(KVActor, "a").put("big", b"x" * 1_000_000) == "ok"
        assert await node.ref(KVActor, "a").get("big") == b"x" * 1_000_000
    with contextlib.suppress(FileNotFoundError):
        filler.unlink()
