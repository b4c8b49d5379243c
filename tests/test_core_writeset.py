"""Write set: layering, last-write-wins, rollback, pending listings; on both builds."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

MODULES = ["dna._core.writeset", "dna._core.writeset_py"]


@pytest.fixture(params=MODULES)
def m(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


def test_missing_sentinel(m: ModuleType) -> None:
    assert repr(m.MISSING) == "MISSING"
    assert m.WriteSet().get("kv", "a") is m.MISSING


def test_last_write_wins_and_delete(m: ModuleType) -> None:
    ws = m.WriteSet()
    ws.write("kv", "a", b"1")
    ws.write("kv", "a", b"2")
    ws.write("log", "a", b"x")
    assert ws.get("kv", "a") == b"2"
    assert ws.get("log", "a") == b"x"
    ws.delete("kv", "a")
    assert ws.get("kv", "a") is None
    ws.delete("kv", "b")
    assert len(ws) == 3
    assert ws.take() == [("kv", "a", None), ("kv", "b", None), ("log", "a", b"x")]
    assert len(ws) == 0


def test_type_checks(m: ModuleType) -> None:
    ws = m.WriteSet()
    with pytest.raises(TypeError):
        ws.write("kv", "a", "not bytes")
    with pytest.raises(TypeError):
        ws.write("kv", "a", None)
    with pytest.raises(TypeError):
        ws.write("kv", 1, b"")
    with pytest.raises(TypeError):
        ws.delete(None, "a")
    assert len(ws) == 0


def test_layers_take_settle_clear(m: ModuleType) -> None:
    ws = m.WriteSet()
    assert not ws.has_committing
    ws.write("kv", "a", b"1")
    ws.write("kv", "b", b"1")
    rows = ws.take()
    assert rows == [("kv", "a", b"1"), ("kv", "b", b"1")]
    assert ws.has_committing and len(ws) == 0
    assert ws.get("kv", "a") == b"1"  # committing layer still visible
    ws.delete("kv", "a")
    ws.write("kv", "c", b"2")
    assert ws.get("kv", "a") is None  # current wins
    assert ws.get("kv", "b") == b"1"
    assert ws.take() == [("kv", "a", None), ("kv", "c", b"2")]  # replaces committing
    assert ws.get("kv", "b") is m.MISSING
    ws.settle()
    assert not ws.has_committing
    assert ws.get("kv", "a") is m.MISSING
    ws.write("kv", "x", b"")
    ws.take()
    ws.write("kv", "y", b"")
    ws.clear()
    assert len(ws) == 0 and not ws.has_committing
    assert ws.get("kv", "x") is m.MISSING and ws.get("kv", "y") is m.MISSING


def test_take_of_nothing_is_not_committing(m: ModuleType) -> None:
    ws = m.WriteSet()
    assert ws.take() == []
    assert not ws.has_committing


def test_rollback_restores_prior_state(m: ModuleType) -> None:
    ws = m.WriteSet()
    ws.write("kv", "a", b"1")
    ws.delete("kv", "d")
    ws.begin()
    ws.write("kv", "a", b"2")
    ws.write("kv", "a", b"3")
    ws.write("kv", "b", b"new")
    ws.delete("kv", "d")
    ws.write("kv", "d", b"back")
    ws.write("other", "z", b"z")
    ws.rollback()
    assert ws.get("kv", "a") == b"1"
    assert ws.get("kv", "b") is m.MISSING
    assert ws.get("kv", "d") is None
    assert ws.get("other", "z") is m.MISSING
    assert len(ws) == 2
    assert ws.take() == [("kv", "a", b"1"), ("kv", "d", None)]


def test_begin_forgets_undo_log(m: ModuleType) -> None:
    ws = m.WriteSet()
    ws.begin()
    ws.write("kv", "a", b"1")
    ws.begin()
    ws.write("kv", "b", b"2")
    ws.rollback()
    ws.rollback()  # nothing left to undo
    assert ws.take() == [("kv", "a", b"1")]


def test_write_sets_never_share_an_undo_log(m: ModuleType) -> None:
    # idle write sets keep no undo log of their own; the first logged write makes one
    sets = [m.WriteSet() for _ in range(3)]
    for i, ws in enumerate(sets):
        ws.write("kv", "k", b"before")
        ws.take()
        ws.begin()
        ws.write("kv", "k", f"in {i}".encode())
    sets[1].rollback()
    assert [ws.get("kv", "k") for ws in sets] == [b"in 0", b"before", b"in 2"]
    sets[0].rollback()
    sets[1].rollback()
    assert [ws.get("kv", "k") for ws in sets] == [b"before", b"before", b"in 2"]
    fresh = m.WriteSet()  # made after the others logged writes: it undoes nothing of theirs
    fresh.begin()
    fresh.rollback()
    assert sets[2].get("kv", "k") == b"in 2"


def test_rollback_after_take_leaves_committing_alone(m: ModuleType) -> None:
    ws = m.WriteSet()
    ws.begin()
    ws.write("kv", "a", b"1")
    ws.take()
    ws.rollback()
    assert ws.get("kv", "a") == b"1"
    ws.begin()
    ws.write("kv", "a", b"2")
    ws.rollback()
    assert ws.get("kv", "a") == b"1" and len(ws) == 0


def test_pending_merges_and_sorts(m: ModuleType) -> None:
    ws = m.WriteSet()
    ws.write("kv", "user:3", b"c")
    ws.write("kv", "user:1", b"a")
    ws.write("kv", "other", b"o")
    ws.write("log", "user:9", b"l")
    ws.take()
    ws.delete("kv", "user:1")
    ws.write("kv", "user:2", b"b")
    assert ws.pending("kv", "user:") == [
        ("user:1", None), ("user:2", b"b"), ("user:3", b"c"),
    ]
    assert ws.pending("kv", "") == [
        ("other", b"o"), ("user:1", None), ("user:2", b"b"), ("user:3", b"c"),
    ]
    assert ws.pending("nope", "") == []
    assert ws.pending("log", "x") == []


# ---------------------------------------------------------------- model check

keys = st.sampled_from(["a", "b", "c", "ab", "abc", "b1"])
mods = st.sampled_from(["kv", "log"])
values = st.binary(max_size=3)


class WriteSetModel(RuleBasedStateMachine):
    """Each build against a plain-dict model of the two layers."""

    def __init__(self) -> None:
        super().__init__()
        self.m: Any = None
        self.ws: Any = None
        self.cur: dict[tuple[str, str], bytes | None] = {}
        self.com: dict[tuple[str, str], bytes | None] = {}
        self.snapshot: dict[tuple[str, str], bytes | None] | None = None

    @initialize(name=st.sampled_from(MODULES))
    def start(self, name: str) -> None:
        self.m = importlib.import_module(name)
        self.ws = self.m.WriteSet()

    @rule(mod=mods, key=keys, value=values)
    def write(self, mod: str, key: str, value: bytes) -> None:
        self.ws.write(mod, key, value)
        self.cur[mod, key] = value

    @rule(mod=mods, key=keys)
    def delete(self, mod: str, key: str) -> None:
        self.ws.delete(mod, key)
        self.cur[mod, key] = None

    @rule()
    def begin(self) -> None:
        self.ws.begin()
        self.snapshot = dict(self.cur)

    @precondition(lambda self: self.snapshot is not None)
    @rule()
    def rollback(self) -> None:
        self.ws.rollback()
        assert self.snapshot is not None
        self.cur = dict(self.snapshot)

    @rule()
    def take(self) -> None:
        rows = self.ws.take()
        assert sorted(rows, key=lambda r: (r[0], r[1])) == sorted(
            (mk[0], mk[1], v) for mk, v in self.cur.items()
        )
        self.com = self.cur
        self.cur = {}
        self.snapshot = None  # writes before take() are no longer rollbackable

    @rule()
    def settle(self) -> None:
        self.ws.settle()
        self.com = {}

    @rule()
    def clear(self) -> None:
        self.ws.clear()
        self.com = {}
        self.cur = {}
        self.snapshot = None

    @rule(mod=mods, key=keys)
    def get(self, mod: str, key: str) -> None:
        want = self.cur.get((mod, key), self.com.get((mod, key), self.m.MISSING))
        assert self.ws.get(mod, key) == want

    @rule(mod=mods, prefix=st.sampled_from(["", "a", "ab", "b", "z"]))
    def pending(self, mod: str, prefix: str) -> None:
        merged = {k: v for (md, k), v in self.com.items() if md == mod and k.startswith(prefix)}
        merged.update(
            {k: v for (md, k), v in self.cur.items() if md == mod and k.startswith(prefix)}
        )
        assert self.ws.pending(mod, prefix) == sorted(merged.items())

    @invariant()
    def sizes(self) -> None:
        if self.ws is not None:
            assert len(self.ws) == len(self.cur)
            assert self.ws.has_committing == bool(self.com)


WriteSetModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                           deadline=None)
TestWriteSetModel = WriteSetModel.TestCase
