"""The route inbox (``_core.inbox``), both builds: admission, waiting senders in order,
wake-up once per arming, hand-over, failure; and the twins agree op by op."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dna._core.inbox as inbox_c
import dna._core.inbox_py as inbox_p


class Fut:
    """Enough of a future for the inbox: done/set_result/set_exception."""

    def __init__(self) -> None:
        self.state: tuple[str, Any] | None = None

    def done(self) -> bool:
        return self.state is not None

    def set_result(self, v: Any) -> None:
        assert self.state is None
        self.state = ("ok", v)

    def set_exception(self, e: BaseException) -> None:
        assert self.state is None
        self.state = ("err", type(e).__name__)


def msg(i: int, reply: Any = None) -> tuple[Any, ...]:
    return (i, (), None, reply)


@pytest.fixture(params=[inbox_c, inbox_p], ids=["compiled", "pure"])
def m(request: pytest.FixtureRequest) -> ModuleType:
    return request.param  # type: ignore[no-any-return]


def test_put_admits_then_waits_in_order(m: ModuleType) -> None:
    box = m.Inbox(2, Fut)
    assert box.put(msg(0)) is None and box.put(msg(1)) is None
    w2, w3 = box.put(msg(2)), box.put(msg(3))
    assert isinstance(w2, Fut) and not w2.done() and box.waiting == 2
    assert not box.offer(msg(9))  # somebody waits: no overtaking
    assert [x[0] for x in box.take(1)] == [0]
    assert w2.state == ("ok", None) and not w3.done()
    assert [x[0] for x in box.take(10)] == [1, 2]
    assert w3.done() and [x[0] for x in box.take(10)] == [3]
    assert len(box) == 0 and box.waiting == 0


def test_wake_once_per_arming(m: ModuleType) -> None:
    woken = []
    box = m.Inbox(10, Fut)
    box.wake = lambda: woken.append(1)
    box.push(msg(0))
    assert woken == []  # not armed yet
    box.arm()  # a message waits: wakes at once
    assert woken == [1] and not box.armed
    box.take(10)
    box.arm()
    assert box.armed and woken == [1]
    box.push(msg(1))
    box.push(msg(2))
    assert woken == [1, 1]  # once for both


def test_push_never_loses_and_skips_abandoned(m: ModuleType) -> None:
    box = m.Inbox(1, Fut)
    gone, kept = Fut(), Fut()
    assert box.push(msg(0))
    assert not box.push(msg(1, gone))
    assert not box.push(msg(2, kept))
    gone.set_result("timed out")  # the caller gave up while waiting
    assert [x[0] for x in box.take(1)] == [0]
    assert [x[0] for x in box.take(1)] == [2]


def test_adopt_keeps_order_and_waiters(m: ModuleType) -> None:
    old, new = m.Inbox(2, Fut), m.Inbox(3, Fut)
    new.push(msg(0))
    old.put(msg(1))
    old.put(msg(2))
    w = old.put(msg(3))
    w2 = old.put(msg(4))
    new.adopt(old)
    assert old.closed and len(old) == 0
    assert not w.done() and not w2.done()  # new is full: they wait there, in order
    assert [x[0] for x in new.take(10)] == [0, 1, 2]
    assert w.done() and w2.done() and [x[0] for x in new.take(10)] == [3, 4]


def test_fail_tells_calls_and_waiting_senders(m: ModuleType) -> None:
    box = m.Inbox(1, Fut)
    call = Fut()
    box.push(msg(0, call))
    waiting = box.put(msg(1))
    queued_cast = box.push(msg(2))
    assert queued_cast is False
    dropped = box.fail(ValueError("gone"))
    assert call.state == ("err", "ValueError") and waiting.state == ("err", "ValueError")
    assert dropped == 1  # the queued cast nobody waited on
    assert len(box) == 0


class Source:
    def __init__(self) -> None:
        self.released: list[int] = []

    def release(self, n: int) -> None:
        self.released.append(n)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 99)),
        st.tuples(st.just("offer"), st.integers(0, 99)),
        st.tuples(st.just("push"), st.integers(0, 99)),
        st.tuples(st.just("take"), st.integers(0, 5)),
        st.tuples(st.just("push_all"), st.integers(0, 4)),
        st.tuples(st.just("arm"), st.none()),
        st.tuples(st.just("giveup"), st.none()),
    ),
    max_size=60,
)


def play(mod: ModuleType, cap: int, script: list[tuple[str, Any]]) -> list[Any]:
    log: list[Any] = []
    box = mod.Inbox(cap, Fut)
    box.wake = lambda: log.append("wake")
    futs: list[Fut] = []
    peers = [Source(), Source()]
    pushed = [0, 0]
    for op, arg in script:
        if op == "put":
            f = box.put(msg(arg))
            if f is not None:
                futs.append(f)
            log.append(f is None)
        elif op == "offer":
            log.append(box.offer(msg(arg)))
        elif op == "push":
            log.append(box.push(msg(arg)))
        elif op == "take":
            log.append([x[0] for x in box.take(arg)])
            log.append([list(p.released) for p in peers])
        elif op == "push_all":
            log.append(box.push_all([msg(100 + i) for i in range(arg)], peers[arg % 2]))
            pushed[arg % 2] += arg
        elif op == "arm":
            box.arm()
        elif futs:
            f = futs.pop(0)
            if not f.done():
                f.set_exception(TimeoutError())
        log.append((len(box), box.waiting, box.armed))
    log.append([f.state for f in futs])
    box.fail(ValueError("end"))
    assert [sum(p.released) for p in peers] == pushed  # every item given back in the end
    return log


@settings(max_examples=300, deadline=None)
@given(cap=st.integers(1, 6), script=ops)
def test_inbox_twins_agree(cap: int, script: list[tuple[str, Any]]) -> None:
    assert play(inbox_c, cap, script) == play(inbox_p, cap, script)


def test_credit_is_given_back_as_queued_messages_are_taken(m: ModuleType) -> None:
    box = m.Inbox(2, Fut)
    src = Source()
    box.push(msg(0))
    box.push(msg(1))  # the mailbox is full: what follows waits
    credit = m.Credit(src, 300)
    for i in range(2, 302):
        assert not box.push(msg(i), credit)
    taken = []
    takes = 0
    while len(box):
        taken += [x[0] for x in box.take(2)]
        takes += 1
    assert taken == list(range(302))
    assert sum(src.released) == 300
    assert len(src.released) <= takes  # one call per take at most, not one per message


def test_failing_queued_messages_gives_their_credit_back(m: ModuleType) -> None:
    box = m.Inbox(1, Fut)
    src = Source()
    box.push(msg(0))
    credit = m.Credit(src, 3)
    for i in range(1, 4):
        box.push(msg(i), credit)
    box.fail(ValueError("gone"))
    assert sum(src.released) == 3


def test_push_all_admits_what_fits_and_queues_the_rest_in_order(m: ModuleType) -> None:
    box = m.Inbox(3, Fut)
    woken: list[int] = []
    box.wake = lambda: woken.append(1)
    box.arm()
    src = Source()
    assert box.push_all([msg(i) for i in range(5)], src) == 3  # room for three
    assert woken == [1] and box.waiting == 2  # one wake-up for the whole frame
    assert box.push_all([msg(5)], src) == 0  # somebody waits: no overtaking
    taken = []
    while len(box):
        taken += [x[0] for x in box.take(2)]
    assert taken == list(range(6))
    assert sum(src.released) == 6  # every one, admitted at once or queued


def test_credit_goes_back_when_the_consumer_takes_not_on_admission(m: ModuleType) -> None:
    # A peer paced by room in the mailbox keeps it full, and every later message of
    # its takes the slow waiting path; paced by what the consumer takes, it never does.
    box = m.Inbox(10, Fut)
    src, other = Source(), Source()
    assert box.push_all([msg(i) for i in range(4)], src) == 4
    box.push(msg(4))  # a local message between two runs of the peer's
    assert box.push_all([msg(i) for i in range(5, 8)], src) == 3
    assert box.push_all([msg(8)], other) == 1
    assert src.released == [] and other.released == []  # admitted, not taken yet
    assert [x[0] for x in box.take(3)] == [0, 1, 2]
    assert src.released == [3]  # what was taken, in one call
    assert [x[0] for x in box.take(5)] == [3, 4, 5, 6, 7]
    assert src.released == [3, 1, 3] and other.released == []  # one call per block
    box.take(1)
    assert other.released == [1]


def test_queued_credit_goes_back_when_taken_and_on_failure(m: ModuleType) -> None:
    box = m.Inbox(2, Fut)
    src = Source()
    assert box.push_all([msg(i) for i in range(5)], src) == 2  # three wait
    assert box.take(1) == [msg(0)]  # one waiting moves in; its credit stays held
    assert src.released == [1]
    box.take(2)  # 1 and 2 taken; 3 and 4 move in
    assert sum(src.released) == 3 and box.waiting == 0
    box.fail(ValueError("gone"))  # 3 and 4 dropped: their credit comes back
    assert sum(src.released) == 5


def test_adopting_an_inbox_gives_its_peers_credit_back(m: ModuleType) -> None:
    old, new = m.Inbox(4, Fut), m.Inbox(4, Fut)
    src = Source()
    old.push_all([msg(i) for i in range(3)], src)
    new.adopt(old)
    assert sum(src.released) == 3
    assert [x[0] for x in new.take(5)] == [0, 1, 2]
