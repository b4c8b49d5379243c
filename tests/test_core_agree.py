"""The compiled core and its pure-Python twins agree, operation by operation."""

from __future__ import annotations

import os
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dna._core.dispatch as dispatch_c
import dna._core.framing as framing_c
import dna._core.framing_py as framing_p
import dna._core.inbox as inbox_c
import dna._core.kv as kv_c
import dna._core.mailbox as mailbox_c
import dna._core.mailbox_py as mailbox_p
import dna._core.writeset as writeset_c
import dna._core.writeset_py as writeset_p
from dna.errors import ProtocolError


def test_compiled_core_loaded() -> None:
    """Fails when the extensions did not build, unless the pure build was asked for."""
    import dna._core as c

    assert c.COMPILED or os.environ.get("DNA_NO_EXTENSIONS")
    for mod in (framing_c, mailbox_c, writeset_c, inbox_c, dispatch_c, kv_c):
        assert mod.__file__ is not None and not mod.__file__.endswith(".py")


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    """What a call did: its result, or its exception's type and message."""
    try:
        return ("ok", fn(*args))
    except Exception as e:
        return (type(e).__name__, str(e))


def normalise(x: Any, missing: Any) -> Any:
    return "<MISSING>" if x is missing else x


# ---------------------------------------------------------------- mailbox

mailbox_ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 1000)),
        st.tuples(st.just("drain"), st.integers(-1, 40)),
        st.tuples(st.just("clear"), st.none()),
        st.tuples(st.just("burst"), st.integers(0, 200)),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(-1, 150), ops=mailbox_ops)
def test_mailbox_agrees(capacity: int, ops: list[tuple[str, Any]]) -> None:
    made = [outcome(mod.Mailbox, capacity) for mod in (mailbox_c, mailbox_p)]
    assert made[0][0] == made[1][0]
    if made[0][0] != "ok":
        assert made[0] == made[1]
        return
    boxes = [made[0][1], made[1][1]]
    for op, arg in ops:
        results = []
        for box in boxes:
            if op == "push":
                r = outcome(box.push, arg)
            elif op == "drain":
                r = outcome(box.drain, arg)
            elif op == "clear":
                r = outcome(box.clear)
            else:
                r = ("ok", [box.push(i) for i in range(arg)])
            results.append((r, len(box), box.full, box.capacity))
        assert results[0] == results[1], op


# ---------------------------------------------------------------- write set

ws_key = st.sampled_from(["a", "b", "ab", "ba", "c"])
ws_mod = st.sampled_from(["kv", "q"])
ws_ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), ws_mod, ws_key, st.binary(max_size=2)),
        st.tuples(st.just("delete"), ws_mod, ws_key),
        st.tuples(st.just("get"), ws_mod, ws_key),
        st.tuples(st.just("pending"), ws_mod, st.sampled_from(["", "a", "b", "x"])),
        st.tuples(st.sampled_from(["begin", "rollback", "take", "settle", "clear"])),
        st.tuples(st.just("bad_write"), st.sampled_from([None, 1, "s"])),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops=ws_ops)
def test_writeset_agrees(ops: list[tuple[Any, ...]]) -> None:
    sets = [(writeset_c, writeset_c.WriteSet()), (writeset_p, writeset_p.WriteSet())]
    for op, *args in ops:
        results = []
        for mod, ws in sets:
            if op == "bad_write":
                r = outcome(ws.write, "kv", "k", args[0])
            else:
                r = outcome(getattr(ws, op), *args)
            r = (r[0], normalise(r[1], mod.MISSING))
            results.append((r, len(ws), ws.has_committing))
        assert results[0] == results[1], op


# ---------------------------------------------------------------- framing

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**65), max_value=2**65)
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=10)
    | st.builds(bytearray, st.binary(max_size=4))
    | st.frozensets(st.integers(), max_size=2),
    lambda inner: st.lists(inner, max_size=4)
    | st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(
        st.none() | st.integers(-5, 5) | st.text(max_size=3) | st.tuples(st.integers()),
        inner,
        max_size=4,
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(obj=values)
def test_copy_agrees(obj: Any) -> None:
    c = outcome(framing_c.copy_packable, obj)
    p = outcome(framing_p.copy_packable, obj)
    assert c == p
    if c[0] == "ok":
        assert c[1] == msgpack.unpackb(
            msgpack.packb(obj, use_bin_type=True), raw=False, strict_map_key=False
        )
    args = obj if isinstance(obj, tuple) else (obj, 1)
    ca = outcome(framing_c.copy_args, args)
    pa = outcome(framing_p.copy_args, args)
    assert ca == pa
    if ca[0] == "ok":
        assert (framing_c.copy_args(args) is args) == (framing_p.copy_args(args) is args)


@settings(max_examples=400, deadline=None)
@given(obj=values)
def test_args_size_agrees_and_bounds_nested_bytes(obj: Any) -> None:
    """The sender's size of a message is the same in both builds and, for what can be
    packed, never below the packed size of its nested containers."""
    import dna._core.dispatch_py as dispatch_p

    args = (obj, [obj], {"k": obj})
    size = dispatch_c.args_size(args, {"kw": [obj]})
    assert size == dispatch_p.args_size(args, {"kw": [obj]})
    if outcome(framing_p.copy_packable, obj)[0] == "ok" and not isinstance(obj, frozenset):
        packed = len(msgpack.packb([[obj], {"k": obj}, [obj]], use_bin_type=True))
        assert size >= packed - 16


@settings(max_examples=300, deadline=None)
@given(obj=values)
def test_pack_and_frames_agree(obj: Any) -> None:
    for fn in ("pack", "encode_frame"):
        assert outcome(getattr(framing_c, fn), obj) == outcome(getattr(framing_p, fn), obj)
    assert outcome(framing_c.encode_frames, [obj, 1]) == outcome(framing_p.encode_frames, [obj, 1])


def run_decoder(mod: Any, limit: int, chunks: list[bytes]) -> list[tuple[str, Any]]:
    """Feed the chunks, iterating after each; record everything that came out."""
    d = mod.FrameDecoder(limit)
    log: list[tuple[str, Any]] = []
    for chunk in chunks:
        try:
            d.feed(chunk)
            for obj in d:
                log.append(("obj", obj))
        except ProtocolError as e:
            log.append(("ProtocolError", str(e)))
        log.append(("buffered", d.buffered))
    return log


def _frames(draw: Any) -> bytes:
    good = draw(st.lists(st.integers() | st.text(max_size=5) | st.binary(max_size=40), max_size=5))
    data = framing_p.encode_frames(
        [x for x in good if not isinstance(x, int) or -(2**63) <= x < 2**64]
    )
    return bytes(data)


@st.composite
def streams(draw: Any) -> tuple[int, list[bytes]]:
    limit = draw(st.integers(0, 64))
    data = _frames(draw)
    if draw(st.booleans()):
        data += draw(st.binary(max_size=60))  # garbage, possibly a truncated frame
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]  # truncated stream
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return limit, chunks


@settings(max_examples=400, deadline=None)
@given(stream=streams())
def test_decoders_agree_and_raise_only_protocol_error(stream: tuple[int, list[bytes]]) -> None:
    limit, chunks = stream
    assert run_decoder(framing_c, limit, chunks) == run_decoder(framing_p, limit, chunks)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), step=st.integers(1, 17))
def test_decoder_survives_random_bytes(data: bytes, step: int) -> None:
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    assert run_decoder(framing_c, 1 << 20, chunks) == run_decoder(framing_p, 1 << 20, chunks)


def test_unpack_agrees_on_garbage() -> None:
    for bad in [b"", b"\xc1", b"\x92", b"\x01\x01", b"\xd6\xff\x00", b"\x91" * 3000 + b"\x01"]:
        c = outcome(framing_c.unpack, bad)
        assert c == outcome(framing_p.unpack, bad)
        assert c[0] == "ProtocolError"


@pytest.mark.parametrize("n", [2**32 - 1, 2**32, 2**40])
def test_payload_limit_agrees(n: int) -> None:
    c = outcome(framing_c._check_payload_size, n)
    assert c == outcome(framing_p._check_payload_size, n)


# ---------------------------------------------------------------- KV writes

import dna._core.kv_py as kv_p  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(
    st.binary(max_size=70_000), st.text(max_size=300),
    st.sampled_from([b"x" * 255, b"x" * 256, b"x" * 65535, b"x" * 65536, "é" * 16, "a" * 31,
                     "a" * 32, "a" * 255, "a" * 256, "a" * 65535, "a" * 65536]),
    st.integers(-(2**63), 2**64 - 1), st.none(),
    st.lists(st.integers(-(2**63), 2**64 - 1), max_size=3),
))
def test_pack_value_is_msgpack(value: Any) -> None:
    """The compiled build writes msgpack headers by hand for bytes and str."""
    want = msgpack.packb(value, use_bin_type=True)
    assert kv_c.pack_value(value) == want
    assert kv_p.pack_value(value) == want


@pytest.mark.parametrize("key", ["k", "", "\ud800", "x" * 11, 7, b"k"])
@pytest.mark.parametrize("value", [b"v", "v" * 20, None])
def test_kv_writers_agree(key: Any, value: Any) -> None:
    results = []
    for disp, ws_mod in ((kv_c, writeset_c), (kv_p, writeset_p)):
        ws = ws_mod.WriteSet()
        w = disp.KVWriter(ws, "kv", 10, 12, OverflowError)
        results.append((outcome(w.write, key, value), outcome(w.delete, key),
                        ws.pending("kv", "") if len(ws) else []))
    assert results[0] == results[1]


# ---------------------------------------------------------------- remote entries


class _Spec:
    def __init__(self, index: int) -> None:
        self.index = index


_HANDLERS = {"put": _Spec(0), "get": _Spec(1)}
_entry = st.one_of(
    st.lists(st.one_of(st.sampled_from(["put", "get", "nope"]), st.integers(), st.none(),
                       st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=2),
                                                                            st.integers(),
                                                                            max_size=2)),
             min_size=0, max_size=4),
    st.tuples(st.sampled_from(["put", "get"]), st.lists(st.binary(max_size=4), max_size=3),
              st.one_of(st.none(), st.just({}), st.just({"k": 1}))).map(list),
    st.integers(),
)


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(_entry, max_size=6), hops=st.integers(0, 5))
def test_decode_entries_agree(entries: list[Any], hops: int) -> None:
    """A peer's cast entries: same mailbox tuples, or the same refusal, in both builds."""
    import dna._core.dispatch_py as dispatch_p

    got_c = outcome(dispatch_c.decode_entries, entries, _HANDLERS, hops)
    got_p = outcome(dispatch_p.decode_entries, entries, _HANDLERS, hops)
    assert got_c == got_p
    if got_c[0] == "ok":
        for msg, entry in zip(got_c[1], entries, strict=True):
            assert msg == (_HANDLERS[entry[0]].index, tuple(entry[1]), entry[2] or None, None, hops)


_cast_msg = st.one_of(
    st.tuples(st.integers(0, 1), st.tuples(st.integers()), st.none(), st.none()),
    st.tuples(st.integers(0, 1), st.tuples(), st.just({"k": 1}), st.none(), st.integers(0, 2)),
    st.tuples(st.integers(0, 1), st.tuples(), st.none(), st.just("reply"), st.integers(0, 2)),
)


@settings(max_examples=300, deadline=None)
@given(msgs=st.lists(_cast_msg, max_size=8), start=st.integers(0, 8))
def test_cast_entries_agree(msgs: list[Any], start: int) -> None:
    """The sender's runs of casts: same entries, hop count and stop in both builds,
    and walking the runs visits every cast once, in order."""
    import dna._core.dispatch_py as dispatch_p

    start = min(start, len(msgs))
    names = ["put", "get"]
    got_c = dispatch_c.cast_entries(msgs, start, names)
    assert got_c == dispatch_p.cast_entries(msgs, start, names)
    entries, hops, stop = got_c
    run = msgs[start:stop]
    assert [(names[m[0]], m[1], m[2]) for m in run] == entries
    assert all(m[3] is None and (m[4] if len(m) > 4 else 0) == hops for m in run)
    if stop < len(msgs):  # it stops only at a call, or at a cast of another hop count
        nxt = msgs[stop]
        assert nxt[3] is not None or (run and (nxt[4] if len(nxt) > 4 else 0) != hops)
