"""Test harness: runs ``async def`` tests on a fresh event loop, fails a test
when the loop's exception handler saw anything, and bounds each test in time.

Stores for the shared contract suite come from ``store_factory``: a real
SQLite file, the in-process ``MemoryStore``, and a real CQL server when
``DNA_CQL_HOSTS`` names one (CI always does).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import pytest

ASYNC_TEST_TIMEOUT = 90.0
CQL_HOSTS = os.environ.get("DNA_CQL_HOSTS", "")
CQL_KEYSPACE = os.environ.get("DNA_CQL_KEYSPACE", "dna_test")
NO_CQL_REASON = "no CQL server: set DNA_CQL_HOSTS=host:port (ci/cassandra/cassandra.sh start)"


def _run_async_test(fn: Callable[..., Any], kwargs: dict[str, Any],
                    timeout: float = ASYNC_TEST_TIMEOUT) -> None:
    errors: list[dict[str, Any]] = []
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    try:
        loop.run_until_complete(asyncio.wait_for(fn(**kwargs), timeout))
        # let callbacks scheduled by the test run, so their failures are seen
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        _cancel_all(loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    if errors:
        msgs = "; ".join(str(e.get("exception") or e.get("message")) for e in errors)
        pytest.fail(f"the event loop reported errors: {msgs}")


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    mark = pyfuncitem.get_closest_marker("async_timeout")  # a test that needs longer
    _run_async_test(pyfuncitem.obj, kwargs, mark.args[0] if mark else ASYNC_TEST_TIMEOUT)
    return True


# ---------------------------------------------------------------- stores


def store_url(kind: str, tmp_path: Any) -> str:
    """The URL of a store of ``kind`` whose data is private to the test."""
    if kind == "memory":  # named after the test's directory: its clients share data
        return "memory://" + quote(str(tmp_path), safe="")
    if kind == "sqlite":
        return "sqlite://" + quote(str(tmp_path / "dna.db"))
    if kind == "sqlite-log":  # the log-first commit path (commit=log)
        return "sqlite://" + quote(str(tmp_path / "dna.db")) + "?commit=log"
    if kind == "cql":
        if not CQL_HOSTS:
            pytest.skip(NO_CQL_REASON)
        return f"cql://{CQL_HOSTS}/{CQL_KEYSPACE}"
    raise ValueError(kind)


def make_store(kind: str, tmp_path: Any, **options: Any) -> Any:
    """A new, unopened store of ``kind`` whose data is private to the test."""
    from dna.store import open_store

    return open_store(store_url(kind, tmp_path), **options)


@pytest.fixture(
    params=["memory", "sqlite", "sqlite-log", pytest.param("cql", marks=pytest.mark.cql)]
)
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "cql" and not CQL_HOSTS:
        pytest.skip(NO_CQL_REASON)
    return kind


@pytest.fixture
def store_factory(store_kind: str, tmp_path: Any) -> Callable[[], Any]:
    """Calling it returns another unopened store on the same data (a second client)."""
    return lambda: make_store(store_kind, tmp_path)


@pytest.fixture
def unique() -> str:
    """A fresh name so tests sharing one CQL keyspace never collide."""
    return uuid.uuid4().hex[:12]


@contextlib.asynccontextmanager
async def opened(store: Any, node_id: str | None = None) -> AsyncIterator[Any]:
    await store.open(node_id or f"node-{uuid.uuid4().hex[:8]}")
    try:
        yield store
    finally:
        await store.close()
