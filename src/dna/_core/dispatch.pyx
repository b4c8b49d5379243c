# cython: language_level=3
"""Batch dispatch (compiled). Same behaviour as ``dispatch_py.py``: read its docs."""

from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.list cimport PyList_AsTuple, PyList_GET_ITEM, PyList_GET_SIZE, PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF


cdef extern from "Python.h":
    int PyObject_IS_GC(object o)
    int PyObject_GC_IsTracked(object o)
    void PyObject_GC_UnTrack(void *o)


cdef inline bint _atoms(tuple t):
    """Nothing in ``t`` can be part of a reference cycle (what the GC would check)."""
    cdef Py_ssize_t i
    cdef object x
    for i in range(PyTuple_GET_SIZE(t)):
        x = <object>PyTuple_GET_ITEM(t, i)
        if PyObject_IS_GC(x) and PyObject_GC_IsTracked(x):
            return False
    return True

from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_GET_LENGTH

from .framing import copy_args, copy_packable
from .inbox cimport Inbox
from ..errors import TooLarge
from .framing_py import DEPTH_LIMIT

cdef extern from "Python.h":
    int _str_kind "PyUnicode_KIND"(object s)  # bytes per character: 1, 2 or 4
    int _str_ascii "PyUnicode_IS_ASCII"(object s)  # 1 when every character is ASCII

cdef int C_SIZE_DEPTH = DEPTH_LIMIT  # containers nested deeper are refused when copied


cdef class Turn:
    """Which handler is running right now (one per process: handlers run one at a time
    on a thread's loop). Senders read it to extend the call chain of the message."""

    cdef public object instance  # the actor instance whose batch is running, or None
    cdef public object msg  # the message whose handler is running, or None

    def __init__(self):
        self.instance = None
        self.msg = None


TURN = Turn()
cdef Turn _turn = TURN


cdef class Dispatcher:
    cdef list fns  # handler functions by index
    cdef list gated  # bool per handler: reply waits for durability
    cdef list is_async  # bool per handler: drive with send(None)
    cdef object make_error  # handler exception -> exception for the caller
    cdef object on_cast_error  # report a failed cast (logging)

    def __init__(self, list table, make_error, on_cast_error):
        self.fns = [spec.fn for spec in table]
        self.gated = [bool(spec.gated) for spec in table]
        self.is_async = [bool(spec.is_async) for spec in table]
        self.make_error = make_error
        self.on_cast_error = on_cast_error

    def run(self, instance, list batch, Py_ssize_t start, ws, list gated, list inflight):
        cdef Py_ssize_t n = PyList_GET_SIZE(batch)
        cdef Py_ssize_t i = start
        cdef Py_ssize_t idx
        cdef tuple msg
        cdef object reply, result, kwargs, yielded
        _turn.instance = instance
        while i < n:
            msg = <tuple>PyList_GET_ITEM(batch, i)
            reply = <object>PyTuple_GET_ITEM(msg, 3)
            if reply is not None and reply.done():
                i += 1
                continue
            idx = <object>PyTuple_GET_ITEM(msg, 0)
            ws.begin()
            _turn.msg = msg
            try:
                kwargs = <object>PyTuple_GET_ITEM(msg, 2)
                if kwargs is None:
                    result = (<object>PyList_GET_ITEM(self.fns, idx))(
                        instance, *<tuple>PyTuple_GET_ITEM(msg, 1))
                else:
                    result = (<object>PyList_GET_ITEM(self.fns, idx))(
                        instance, *<tuple>PyTuple_GET_ITEM(msg, 1), **kwargs)
                if <object>PyList_GET_ITEM(self.is_async, idx):
                    try:
                        yielded = result.send(None)
                    except StopIteration as stop:
                        result = stop.value
                    else:
                        _turn.msg = None
                        _turn.instance = None
                        return (i, result, yielded)
                if reply is not None:
                    result = copy_packable(result)
            except BaseException as exc:  # whatever a handler raises is its caller's error
                self._failed(msg, exc, ws)
            else:
                if reply is not None:
                    self._reply(reply, <bint>(<object>PyList_GET_ITEM(self.gated, idx)),
                                result, ws, gated, inflight)
            i += 1
        _turn.msg = None
        _turn.instance = None
        return None

    def complete(self, tuple msg, bint ok, value, ws, list gated, list inflight):
        reply = msg[3]
        if ok:
            if reply is None:
                return
            try:
                value = copy_packable(value)
            except BaseException as exc:
                self._failed(msg, exc, ws)
                return
            self._reply(reply, self.gated[msg[0]], value, ws, gated, inflight)
        else:
            self._failed(msg, value, ws)

    cdef _reply(self, reply, bint gate, result, ws, list gated, list inflight):
        if gate:
            if len(ws):
                gated.append((reply, result))
                return
            if ws.has_committing:
                inflight.append((reply, result))
                return
        if not reply.done():
            reply.set_result(result)

    cdef _failed(self, tuple msg, exc, ws):
        ws.rollback()
        reply = msg[3]
        if reply is None:
            self.on_cast_error(msg, exc)
        elif not reply.done():
            reply.set_exception(self.make_error(exc))


# Activation states, shared with the runtime (dna.activation).
ACTIVATING, IDLE, SCHEDULED, RUNNING, BLOCKED, CLOSING, CLOSED = range(7)


cdef class _Done:
    """An awaitable that is already complete: a cast that found room."""

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        raise StopIteration


DONE = _Done()


cdef Py_ssize_t _size_of(object v) except -1:
    """Bytes a top-level argument takes on the wire: bytes and str by their length,
    containers by ``_nested_size`` (other scalars count 0: the frame's slack covers them)."""
    cdef Py_ssize_t n
    cdef type t = type(v)
    if t is bytes or t is bytearray:
        return len(v)
    if t is str:
        n = PyUnicode_GET_LENGTH(v)
        if n > 1024:  # exact UTF-8 size only where it may matter
            PyUnicode_AsUTF8AndSize(v, &n)
        return n
    if t is list or t is tuple or t is dict:
        return _nested_size(v, 0)
    return 0


cdef Py_ssize_t _nested_size(object v, int depth) except -1:
    """At least what ``v`` takes packed (each item counted with its largest header);
    past the depth limit 0: copying refuses it anyway."""
    cdef Py_ssize_t n
    cdef type t = type(v)
    if t is bytes or t is bytearray:
        return len(v) + 5
    if t is str:
        n = PyUnicode_GET_LENGTH(v)
        if _str_ascii(v):
            return n + 5
        return n * (_str_kind(v) + 1) + 5  # UTF-8 needs at most kind + 1 bytes a character
    if depth >= C_SIZE_DEPTH:
        return 0
    n = 5
    if t is list or t is tuple:
        for x in v:
            n += _nested_size(x, depth + 1)
    elif t is dict:
        for k, x in (<dict>v).items():
            n += _nested_size(k, depth + 1) + _nested_size(x, depth + 1)
    else:
        return 9
    return n


cpdef Py_ssize_t args_size(tuple args, object kwargs) except -1:
    """What the bytes and str arguments of a message weigh (the rest is small beside a
    frame): the sender refuses a message no frame could carry, local owner or not."""
    cdef Py_ssize_t total = 0
    for a in args:
        total += _size_of(a)
    if kwargs:
        for a in (<dict>kwargs).values():
            total += _size_of(a)
    return total


cdef class SenderBase:
    cdef public object node  # routes and activates
    cdef public object aid  # whose handler this is (an ActorId)
    cdef public object atype  # the actor's class
    cdef public Py_ssize_t index  # handler index in the class table
    cdef public object name  # handler name
    cdef public double timeout  # call deadline in seconds (unused by casts)
    cdef public Inbox inbox  # cached route's inbox; resolved again once closed
    cdef public Py_ssize_t limit  # most bytes of bytes/str arguments a message may carry

    def __init__(self, node, aid, atype, Py_ssize_t index, double timeout):
        # not the ref itself: the ref caches its senders, and a sender keeping the ref
        # made every ref a garbage cycle, freed only by the cyclic collector
        self.node = node
        self.aid = aid
        self.atype = atype
        self.index = index
        self.name = atype._dna_table[index].name
        self.timeout = timeout
        self.inbox = None
        self.limit = node.max_message_bytes

    def too_large(self, Py_ssize_t size):
        return TooLarge(
            f"{self.aid}.{self.name}: a message of {size} bytes is over the "
            f"{self.limit}-byte limit (max_frame_size): nothing was sent")

    def route(self):
        """The inbox of the actor's current route, resolved again when the cached one closed."""
        inbox = self.inbox
        if inbox is None or inbox.closed:
            inbox = self.inbox = self.node.resolve(self.aid, self.atype)
        return inbox


cdef class CastSenderBase(SenderBase):

    def __call__(self, *args, **kwargs):
        cdef Py_ssize_t size = args_size(args, kwargs)
        if size > self.limit:
            raise self.too_large(size)
        msg = (self.index, copy_args(args), copy_packable(kwargs) if kwargs else None, None)
        cdef Inbox inbox = self.inbox
        if inbox is None or inbox.closed:
            inbox = self.route()
        fut = inbox.put(msg)
        if fut is None:
            return DONE
        return fut


def decode_entries(list entries, dict handlers, object hops):
    """Compiled ``decode_entries``: see ``dispatch_py.py``. One C loop per frame of
    casts: in Python this loop was the largest cost of a remote cast."""
    cdef Py_ssize_t i, n = PyList_GET_SIZE(entries)
    cdef list out = PyList_New(n)
    cdef object entry, hname, args, kwargs, spec, msg
    cdef tuple targs
    for i in range(n):
        entry = <object>PyList_GET_ITEM(entries, i)
        if type(entry) is not list or PyList_GET_SIZE(entry) != 3:
            raise ValueError("malformed actor message entry")
        hname = <object>PyList_GET_ITEM(entry, 0)
        args = <object>PyList_GET_ITEM(entry, 1)
        kwargs = <object>PyList_GET_ITEM(entry, 2)
        spec = handlers.get(hname) if type(hname) is str else None
        if spec is None:
            raise LookupError(hname)
        if type(args) is not list or not (kwargs is None or type(kwargs) is dict):
            raise ValueError("malformed actor message: bad arguments")
        targs = PyList_AsTuple(args)
        msg = (spec.index, targs, kwargs or None, None, hops)
        # a message of plain values is untracked now, as the GC's first pass over it
        # would do: thousands wait in a mailbox, and each pass would trace them again
        if _atoms(targs):
            PyObject_GC_UnTrack(<void *>targs)
            if not kwargs:
                PyObject_GC_UnTrack(<void *>msg)
        Py_INCREF(msg)  # PyList_SET_ITEM steals a reference
        PyList_SET_ITEM(out, i, msg)
    return out


def cast_entries(list msgs, Py_ssize_t start, list names):
    """Compiled ``cast_entries``: see ``dispatch_py.py`` (the sender's loop per cast)."""
    cdef Py_ssize_t n = PyList_GET_SIZE(msgs)
    cdef Py_ssize_t i = start
    cdef object hops = None
    cdef object h
    cdef tuple msg
    cdef list entries = []
    while i < n:
        msg = <tuple>PyList_GET_ITEM(msgs, i)
        if <object>PyTuple_GET_ITEM(msg, 3) is not None:
            break
        h = <object>PyTuple_GET_ITEM(msg, 4) if PyTuple_GET_SIZE(msg) > 4 else 0
        if hops is None:
            hops = h
        elif h != hops:
            break
        entries.append((names[<object>PyTuple_GET_ITEM(msg, 0)],  # msgpack's array too
                        <object>PyTuple_GET_ITEM(msg, 1), <object>PyTuple_GET_ITEM(msg, 2)))
        i += 1
    return entries, (0 if hops is None else hops), i
