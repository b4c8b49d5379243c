"""asv benchmarks of the hot core (``dna._core``), compiled and pure twin side by side.

Each suite is parametrised over ``build``: "compiled" imports the Cython
extension, "pure" the ``*_py`` twin, so one run shows both.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

BUILDS = ["compiled", "pure"]


def _module(name: str, build: str) -> ModuleType:
    return importlib.import_module(f"dna._core.{name}" + ("_py" if build == "pure" else ""))


class MailboxPushDrain:
    """10k pushes then drains of 256 (the default batch), on one mailbox."""

    params = BUILDS
    param_names = ["build"]

    def setup(self, build: str) -> None:
        self.mailbox = _module("mailbox", build).Mailbox(16_384)
        self.items = [(i, (), None, None) for i in range(10_000)]

    def time_push_drain_10k(self, build: str) -> None:
        box = self.mailbox
        push = box.push
        for item in self.items:
            push(item)
        while len(box):
            box.drain(256)


class WriteSetMerge:
    """5k writes over 2.5k distinct keys (50% overlap) in 50 handlers, then take()."""

    params = BUILDS
    param_names = ["build"]

    def setup(self, build: str) -> None:
        self.mod = _module("writeset", build)
        self.keys = [f"key:{i % 2500}" for i in range(5_000)]
        self.value = b"v" * 32

    def time_write_5k_take(self, build: str) -> None:
        ws = self.mod.WriteSet()
        write = ws.write
        value = self.value
        keys = self.keys
        for h in range(0, 5_000, 100):
            ws.begin()
            for key in keys[h : h + 100]:
                write("kv", key, value)
        ws.take()
        ws.settle()


class Framing:
    """1k small messages: encode as one coalesced write, decode in 64 KiB chunks."""

    params = BUILDS
    param_names = ["build"]

    def setup(self, build: str) -> None:
        self.mod = _module("framing", build)
        self.msgs: list[Any] = [
            [1, i, "room", "put", [f"key{i}", b"value" * 4], None] for i in range(1_000)
        ]
        self.data = self.mod.encode_frames(self.msgs)
        self.chunks = [self.data[i : i + 65_536] for i in range(0, len(self.data), 65_536)]

    def time_encode_frames_1k(self, build: str) -> None:
        self.mod.encode_frames(self.msgs)

    def time_encode_frame_1k(self, build: str) -> None:
        encode = self.mod.encode_frame
        for m in self.msgs:
            encode(m)

    def time_decode_1k_64k_chunks(self, build: str) -> None:
        d = self.mod.FrameDecoder()
        n = 0
        for chunk in self.chunks:
            d.feed(chunk)
            for _ in d:
                n += 1
        assert n == 1_000

    def time_copy_args_1k(self, build: str) -> None:
        copy_args = self.mod.copy_args
        for m in self.msgs:
            copy_args(m[4])
