"""The private, I/O-free hot core: mailbox, write sets, framing, batch dispatch.

Each part is compiled from Cython (``<name>.pyx`` + ``.pxd``) and has a
pure-Python twin (``<name>_py.py``) with the same behaviour.
Cython's pure-Python mode (the twin compiled with a ``.pxd``, one source) was
measured for the write set, the simplest part, and lost: casts 5.08M/s with the
hand-written ``writeset.pyx`` against 3.37M/s with ``writeset_py.py`` + ``.pxd``
(0.66x, ``bench/compare.py --only runtime``, 3 rounds side by side, 2026-12-02);
the twins stay hand-written ``.pyx`` + plain ``.py``, kept equal by the
agreement tests. ``DNA_NO_EXTENSIONS=1`` in the environment selects the twins at import;
``COMPILED`` tells which build is running. Nothing here imports asyncio or a
database driver.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

NO_EXTENSIONS = bool(os.environ.get("DNA_NO_EXTENSIONS"))

# The pure twins are also the type source: the type checker reads them, never a
# hand-kept stub, so the two builds cannot differ in what they promise.
if TYPE_CHECKING or NO_EXTENSIONS:
    from .dispatch_py import (
        ACTIVATING,
        BLOCKED,
        CLOSED,
        CLOSING,
        DONE,
        IDLE,
        RUNNING,
        SCHEDULED,
        TURN,
        CastSenderBase,
        Dispatcher,
        SenderBase,
        Turn,
        args_size,
        cast_entries,
        decode_entries,
    )
    from .framing_py import (
        FrameDecoder,
        copy_args,
        copy_packable,
        encode_frame,
        encode_frames,
        pack,
        unpack,
    )
    from .inbox_py import Credit, Inbox
    from .kv_py import KVWriter, pack_value
    from .mailbox_py import Mailbox
    from .writeset_py import MISSING, WriteSet


    COMPILED = False
else:
    from .dispatch import (
        ACTIVATING,
        BLOCKED,
        CLOSED,
        CLOSING,
        DONE,
        IDLE,
        RUNNING,
        SCHEDULED,
        TURN,
        CastSenderBase,
        Dispatcher,
        SenderBase,
        Turn,
        args_size,
        cast_entries,
        decode_entries,
    )
    from .framing import (
        FrameDecoder,
        copy_args,
        copy_packable,
        encode_frame,
        encode_frames,
        pack,
        unpack,
    )
    from .inbox import Credit, Inbox
    from .kv import KVWriter, pack_value
    from .mailbox import Mailbox
    from .writeset import MISSING, WriteSet


    COMPILED = True

__all__ = [
    "ACTIVATING",
    "BLOCKED",
    "CLOSED",
    "CLOSING",
    "COMPILED",
    "DONE",
    "IDLE",
    "MISSING",
    "RUNNING",
    "SCHEDULED",
    "TURN",
    "CastSenderBase",
    "Credit",
    "Dispatcher",
    "FrameDecoder",
    "Inbox",
    "KVWriter",
    "Mailbox",
    "SenderBase",
    "Turn",
    "WriteSet",
    "args_size",
    "cast_entries",
    "copy_args",
    "copy_packable",
    "decode_entries",
    "encode_frame",
    "encode_frames",
    "pack",
    "pack_value",
    "unpack",
]
