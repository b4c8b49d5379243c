"""Framing: pack/unpack, frames, the incremental decoder, copy_packable; on both builds."""

from __future__ import annotations

import importlib
import math
from collections import OrderedDict
from enum import IntEnum
from types import ModuleType
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dna.errors import ProtocolError

MODULES = ["dna._core.framing", "dna._core.framing_py"]


@pytest.fixture(params=MODULES)
def f(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
keys = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
packable = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5)
    | st.lists(inner, max_size=5).map(tuple)
    | st.dictionaries(keys, inner, max_size=5),
    max_leaves=30,
)


def roundtrip(obj: Any) -> Any:
    return msgpack.unpackb(
        msgpack.packb(obj, use_bin_type=True), raw=False, strict_map_key=False, use_list=True
    )


# ---------------------------------------------------------------- pack / frames


@settings(max_examples=200, deadline=None)
@given(obj=packable)
def test_pack_unpack_roundtrip(obj: Any) -> None:
    for name in MODULES:
        f = importlib.import_module(name)
        data = f.pack(obj)
        assert data == msgpack.packb(obj, use_bin_type=True)
        assert f.unpack(data) == roundtrip(obj)
        frame = f.encode_frame(obj)
        assert frame == len(data).to_bytes(4, "big") + data


def test_encode_frames_concatenates(f: ModuleType) -> None:
    objs = [1, "two", [3, b"4"], {"five": None}]
    assert f.encode_frames(objs) == b"".join(f.encode_frame(o) for o in objs)
    assert f.encode_frames([]) == b""


def test_unpack_refuses_garbage(f: ModuleType) -> None:
    for bad in [b"", b"\xc1", b"\x92\x01", b"\x01\x02", b"\xa1\xff", b"\x81\x91\x01\x02"]:
        with pytest.raises(ProtocolError):
            f.unpack(bad)
    assert f.unpack(bytearray(b"\x01")) == 1
    assert f.unpack(memoryview(b"\x01")) == 1
    with pytest.raises(TypeError):
        f.unpack(123)


def test_pack_refuses_unpackable(f: ModuleType) -> None:
    with pytest.raises(TypeError):
        f.pack({1, 2})
    with pytest.raises(TypeError):
        f.encode_frame(object())
    with pytest.raises(TypeError):
        f.encode_frames([1, object()])


def test_pack_refusals_are_type_errors_naming_where(f: ModuleType) -> None:
    # msgpack itself raises OverflowError / ValueError for these: pack says TypeError
    with pytest.raises(TypeError, match=r"value\[1\]\['k'\]: object of type set"):
        f.pack([1, {"k": {2}}])
    with pytest.raises(TypeError, match=r"value\[0\]: int out of the msgpack range"):
        f.pack([2**64])
    with pytest.raises(TypeError, match=r"value\[0\]: int out of the msgpack range"):
        f.encode_frame([-(2**63) - 1])
    deep: Any = 1
    for _ in range(2_000):  # deeper than msgpack's own nesting limit
        deep = [deep]
    with pytest.raises(TypeError):
        f.pack(deep)
    assert f.pack([7]) == b"\x91\x07"  # the shared packer is reset after a refusal


# ---------------------------------------------------------------- decoder


MSGS = [0, "hello", b"\x00" * 300, {"a": [1, 2.5, None, True]}, [], "é" * 70]


def test_decoder_whole_buffer(f: ModuleType) -> None:
    d = f.FrameDecoder()
    d.feed(f.encode_frames(MSGS))
    assert list(d) == MSGS
    assert d.buffered == 0
    assert list(d) == []


def test_decoder_every_split_point(f: ModuleType) -> None:
    data = f.encode_frames(MSGS)
    for cut in range(len(data) + 1):
        d = f.FrameDecoder()
        d.feed(data[:cut])
        got = list(d)
        d.feed(memoryview(data)[cut:])
        got += list(d)
        assert got == MSGS, cut


def test_decoder_byte_by_byte(f: ModuleType) -> None:
    data = f.encode_frames(MSGS)
    d = f.FrameDecoder()
    got: list[Any] = []
    for i in range(len(data)):
        d.feed(data[i : i + 1])
        got.extend(d)
    assert got == MSGS and d.buffered == 0


def test_decoder_large_frame_fed_in_small_pieces(f: ModuleType) -> None:
    big = b"x" * 1_000_000
    data = f.encode_frame(big) + f.encode_frame(1)
    d = f.FrameDecoder()
    got: list[Any] = []
    for i in range(0, len(data), 1000):
        d.feed(bytearray(data[i : i + 1000]))
        got.extend(d)
    assert got == [big, 1]


def test_truncated_frame_yields_nothing(f: ModuleType) -> None:
    frame = f.encode_frame({"k": "v" * 10})
    for cut in range(len(frame)):
        d = f.FrameDecoder()
        d.feed(frame[:cut])
        assert list(d) == []
        assert d.buffered == cut


def test_oversize_header_raises_before_payload(f: ModuleType) -> None:
    d = f.FrameDecoder(100)
    assert d.max_frame_size == 100
    d.feed(f.encode_frame("ok"))
    d.feed((101).to_bytes(4, "big"))
    it = iter(d)
    assert next(it) == "ok"
    with pytest.raises(ProtocolError, match=r"101 bytes.*limit of 100"):
        next(it)
    with pytest.raises(ProtocolError):
        d.feed(b"\x00")
    with pytest.raises(ProtocolError):
        next(it)


def test_exactly_max_size_is_accepted(f: ModuleType) -> None:
    payload = msgpack.packb(b"x" * 95)
    d = f.FrameDecoder(len(payload))
    d.feed(len(payload).to_bytes(4, "big") + payload)
    assert list(d) == [b"x" * 95]


@pytest.mark.parametrize(
    "payload",
    [b"\xc1", b"\x01\x02", b"", b"\x92\x01", b"\xa2\xff\xfe", b"\x81\x80\x01"],
    ids=["reserved", "extra", "empty", "short-array", "bad-utf8", "dict-key"],
)
def test_bad_payload_poisons(f: ModuleType, payload: bytes) -> None:
    d = f.FrameDecoder()
    d.feed(len(payload).to_bytes(4, "big") + payload + f.encode_frame(1))
    with pytest.raises(ProtocolError, match="malformed"):
        list(d)
    with pytest.raises(ProtocolError):
        list(d)
    with pytest.raises(ProtocolError):
        d.feed(f.encode_frame(1))


def test_decoder_bad_limit(f: ModuleType) -> None:
    with pytest.raises(ValueError):
        f.FrameDecoder(-1)


@pytest.mark.parametrize("limit", [2**32, 2**63, 2**64, 2**100])
def test_decoder_limit_over_the_header_range_is_the_same_error_in_both_builds(
    f: ModuleType, limit: int
) -> None:
    with pytest.raises(ValueError, match="4294967295"):
        f.FrameDecoder(limit)


def test_decoder_limit_at_the_header_range_is_accepted(f: ModuleType) -> None:
    assert f.FrameDecoder(2**32 - 1).max_frame_size == 2**32 - 1
    with pytest.raises(TypeError):
        f.FrameDecoder(1.5)


def test_payload_over_4gib_is_refused(f: ModuleType) -> None:
    """The size check encode_frame(s) apply, tested without allocating 4 GiB."""
    f._check_payload_size(0)
    f._check_payload_size(2**32 - 1)
    with pytest.raises(ValueError, match=r"payload of 4294967296 bytes exceeds"):
        f._check_payload_size(2**32)


# ---------------------------------------------------------------- copy_packable


@settings(max_examples=300, deadline=None)
@given(obj=packable)
def test_copy_packable_equals_roundtrip(obj: Any) -> None:
    for name in MODULES:
        f = importlib.import_module(name)
        copied = f.copy_packable(obj)
        assert copied == roundtrip(obj)
        assert _types(copied) == _types(roundtrip(obj))


def _types(x: Any) -> Any:
    if isinstance(x, list):
        return [_types(i) for i in x]
    if isinstance(x, dict):
        return {k: _types(v) for k, v in x.items()}
    return type(x)


def test_scalars_are_returned_as_is(f: ModuleType) -> None:
    for x in ["s", b"b", 7, 2**64 - 1, -(2**63), 1.5, True, None]:
        assert f.copy_packable(x) is x


def test_containers_are_copied(f: ModuleType) -> None:
    inner = [1]
    outer = {"a": inner, "t": (1, (2,))}
    c = f.copy_packable(outer)
    assert c == {"a": [1], "t": [1, [2]]}
    assert c is not outer and c["a"] is not inner
    inner.append(2)
    assert c["a"] == [1]


def test_bytes_likes_and_subclasses(f: ModuleType) -> None:
    class S(str):
        pass

    class E(IntEnum):
        A = 1

    got = f.copy_packable(
        [bytearray(b"ab"), memoryview(b"cd"), S("s"), E.A, OrderedDict(x=1), {E.A: S("v")}]
    )
    assert got == [b"ab", b"cd", "s", 1, {"x": 1}, {1: "v"}]
    assert [type(x) for x in got] == [bytes, bytes, str, int, dict, dict]
    assert type(next(iter(got[5]))) is int
    assert got == roundtrip(
        [bytearray(b"ab"), memoryview(b"cd"), S("s"), E.A, OrderedDict(x=1), {E.A: S("v")}]
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1, 2}, "value: object of type set is not msgpack-serialisable"),
        ({"a": [1, 2, {3}]}, "value['a'][2]: object of type set is not msgpack-serialisable"),
        ([2**64], "value[0]: int out of the msgpack range"),
        ([-(2**63) - 1], "value[0]: int out of the msgpack range"),
        ({"k": {(1,): 2}}, "value['k']: dict key of type tuple is not msgpack-serialisable"),
        (msgpack.ExtType(1, b""), "value: object of type ExtType"),
        ([print], "value[0]: object of type builtin_function_or_method"),
    ],
)
def test_copy_packable_refuses(f: ModuleType, value: Any, message: str) -> None:
    with pytest.raises(TypeError) as e:
        f.copy_packable(value)
    assert str(e.value).startswith(message)


def test_depth_limit(f: ModuleType) -> None:
    def nest(n: int, leaf: Any) -> Any:
        for _ in range(n):
            leaf = [leaf]
        return leaf

    assert f.copy_packable(nest(512, 1)) == nest(512, 1)
    with pytest.raises(TypeError, match="nested more than 512"):
        f.copy_packable(nest(513, []))
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(TypeError, match="nested more than 512"):
        f.copy_packable(cyclic)


def test_copy_args(f: ModuleType) -> None:
    args = (1, "a", b"b", 2.0, None, True, 2**64 - 1)
    assert f.copy_args(args) is args
    assert f.copy_args(()) == ()
    big = (1, [2, (3,)], {"a": bytearray(b"x")})
    c = f.copy_args(big)
    assert c == (1, [2, [3]], {"a": b"x"}) and type(c) is tuple
    with pytest.raises(TypeError, match=r"^argument 2\['a'\]\[2\]: object of type set"):
        f.copy_args((1, {"a": [1, 2, {3}]}))
    with pytest.raises(TypeError, match=r"^argument 1: int out of the msgpack range"):
        f.copy_args((2**64,))


def test_copy_packable_floats(f: ModuleType) -> None:
    assert math.isnan(f.copy_packable([float("nan")])[0])
    assert f.copy_packable(float("inf")) == math.inf
