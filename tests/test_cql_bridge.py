"""The CQL bridge's flow control, one layer alone (a fake driver session): at most
``window`` requests in flight, the rest sent in order as room frees; urgent ones
skip the wait; a request the driver refused unsent (``ConnectionBusy`` on every
host) goes again until the request timeout, then fails with the driver's error.
The real driver and server under such a burst: test_storage_timers.py's 100k
timers on Cassandra."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

# the driver is the [cql] extra; CI installs [test], which has it, so this runs there
pytest.importorskip("cassandra", reason="scylla-driver is not installed (the [cql] extra)")

from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionBusy

from dna.store.cql._bridge import Bridge


class FakeFuture:
    """A driver ResponseFuture: its callbacks run on another thread, as the driver's."""

    has_more_pages = False

    def __init__(self) -> None:
        self.cb: Any = None
        self.eb: Any = None

    def add_callbacks(self, callback: Any, errback: Any, callback_args: Any = (),
                      errback_args: Any = ()) -> None:
        self.cb = lambda rows: callback(rows, *callback_args)
        self.eb = lambda exc: errback(exc, *errback_args)

    def answer(self, rows: Any) -> None:
        t = threading.Thread(target=self.cb, args=(rows,))
        t.start()
        t.join()

    def fail(self, exc: BaseException) -> None:
        t = threading.Thread(target=self.eb, args=(exc,))
        t.start()
        t.join()


class FakeSession:
    def __init__(self, busy: int = 0) -> None:
        self.sent: list[tuple[Any, Any]] = []
        self.futures: list[FakeFuture] = []
        self.busy = busy  # the next this many sends are refused unsent

    def execute_async(self, query: Any, params: Any, timeout: Any = None,
                      execution_profile: Any = None) -> FakeFuture:
        f = FakeFuture()
        self.sent.append((query, params))
        self.futures.append(f)
        if self.busy:
            self.busy -= 1
            loop = asyncio.get_running_loop()
            loop.call_soon(f.fail, NoHostAvailable(
                "busy", {"127.0.0.1:9042": ConnectionBusy("Connection is overloaded")}))
        return f


async def settle(pred: Any) -> None:
    """Let the loop run the driver thread's hand-offs until ``pred()`` holds."""
    for _ in range(1000):
        if pred():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("never settled")


async def test_requests_past_the_window_wait_and_go_in_order() -> None:
    session = FakeSession()
    b = Bridge(asyncio.get_running_loop(), session, timeout=5.0, window=2)
    futs = [b.run(f"q{i}") for i in range(5)]
    assert [q for q, _ in session.sent] == ["q0", "q1"]  # the window is full
    urgent = b.run("beat", urgent=True)
    assert [q for q, _ in session.sent] == ["q0", "q1", "beat"]  # skips the wait
    futs[2].cancel()  # its caller stopped waiting: never sent
    session.futures[0].answer([("r0",)])
    assert await futs[0] == [("r0",)]
    assert len(session.sent) == 3  # the urgent one holds a place too: still full
    session.futures[2].answer([])
    assert await urgent == []
    await settle(lambda: len(session.sent) == 4)
    assert [q for q, _ in session.sent][3] == "q3"  # q2 was skipped
    session.futures[1].answer([])
    await settle(lambda: len(session.sent) == 5)
    session.futures[3].answer([])
    session.futures[4].answer([("r4",)])
    assert await futs[4] == [("r4",)]
    await settle(lambda: b.inflight == 0)
    assert not b.waiting


async def test_a_request_refused_unsent_goes_again_then_answers() -> None:
    session = FakeSession(busy=3)
    b = Bridge(asyncio.get_running_loop(), session, timeout=5.0, window=4)
    fut = b.run("q", (1,))
    await settle(lambda: len(session.sent) == 4)
    assert session.sent == [("q", (1,))] * 4
    session.futures[3].answer([("ok",)])
    assert await fut == [("ok",)]
    assert b.inflight == 0


async def test_a_request_busy_past_its_timeout_fails_with_the_drivers_error() -> None:
    session = FakeSession(busy=10**6)
    b = Bridge(asyncio.get_running_loop(), session, timeout=0.05, window=4)
    with pytest.raises(NoHostAvailable):
        await b.run("q")
    assert 2 <= len(session.sent) < 50  # sent again a few times, with pauses between
    assert b.inflight == 0


async def test_other_errors_are_not_sent_again() -> None:
    session = FakeSession()
    b = Bridge(asyncio.get_running_loop(), session, timeout=5.0, window=4)
    fut = b.run("q")
    session.futures[0].fail(NoHostAvailable("down", {"h": ConnectionRefusedError()}))
    with pytest.raises(NoHostAvailable):
        await fut
    assert len(session.sent) == 1 and b.inflight == 0
