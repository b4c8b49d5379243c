# cython: language_level=3
"""Batch dispatch (compiled). Same behaviour as ``dispatch_py.py``: read its docs."""

from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE

from .framing import copy_packable


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
        while i < n:
            msg = <tuple>PyList_GET_ITEM(batch, i)
            reply = <object>PyTuple_GET_ITEM(msg, 3)
            if reply is not None and reply.done():
                i += 1
                continue
            idx = <object>PyTuple_GET_ITEM(msg, 0)
            ws.begin()
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
                        return (i, result, yielded)
                if reply is not None:
                    result = copy_packable(result)
            except Exception as exc:
                self._failed(msg, exc, ws)
            else:
                if reply is not None:
                    self._reply(reply, <bint>(<object>PyList_GET_ITEM(self.gated, idx)),
                                result, ws, gated, inflight)
            i += 1
        return None

    def complete(self, tuple msg, bint ok, value, ws, list gated, list inflight):
        reply = msg[3]
        if ok:
            if reply is None:
                return
            try:
                value = copy_packable(value)
            except Exception as exc:
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
