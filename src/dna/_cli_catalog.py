"""``dna actors`` and ``dna inspect``: the actor catalog of a store, read-only.

Neither creates a store: a missing SQLite file or CQL keyspace is one line and
``EXIT_STORE``, like ``dna status``. A type or actor the store does not hold is
one line and ``EXIT_NOT_FOUND``. Values are msgpack-decoded; every text that
comes from the store is printed with control characters escaped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from .cli import EXIT_NOT_FOUND, EXIT_OK, EXIT_STORE, EXIT_USAGE, _store_args, fail, open_store_arg

__all__ = ["add_actors_command", "add_inspect_command"]


def add_actors_command(p: argparse.ArgumentParser) -> None:
    _store_args(p, "sqlite://dna.db")
    p.add_argument("--type", metavar="TYPE", help="only actors of this type name (default: all)")
    p.add_argument("--namespace", metavar="NS", help="only actors of this namespace (default: all)")
    p.add_argument("--limit", type=int, default=100, metavar="N",
                   help="actors to print, 1 to 10,000 (default: 100)")
    p.add_argument("--after", metavar="CURSOR",
                   help="go on after this cursor (the 'next:' line of an earlier listing)")
    p.add_argument("--json", action="store_true",
                   help='print one JSON object: {"actors": [...], "next": cursor or null}')
    p.set_defaults(func=cmd_actors)


def add_inspect_command(p: argparse.ArgumentParser) -> None:
    _store_args(p, "sqlite://dna.db")
    p.add_argument("type", metavar="TYPE", help="the actor's type name")
    p.add_argument("key", metavar="KEY", help="the actor's key")
    p.add_argument("--namespace", default="default", metavar="NS",
                   help="the actor's namespace (default: default)")
    p.add_argument("--limit", type=int, default=1000, metavar="N",
                   help="stored rows to print at most, 1 to 10,000 (default: 1,000)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_inspect)


def _check(ns: argparse.Namespace) -> None:
    from .catalog import MAX_LIMIT

    if not 1 <= ns.limit <= MAX_LIMIT:
        fail(EXIT_USAGE, f"--limit must be between 1 and {MAX_LIMIT:,}, not {ns.limit}")
    for opt in ("type", "namespace", "key"):
        if getattr(ns, opt, None) == "":
            fail(EXIT_USAGE, f"the actor {opt} must not be empty")


async def _with_store(store: Any, work: Any) -> Any:
    from .node import new_node_id

    await store.open(f"status-{new_node_id()}", "")  # a probe: dna status hides it
    try:
        return await work(store)
    finally:
        await store.close()


def _run(ns: argparse.Namespace, work: Any) -> Any:
    from .errors import StoreError

    store = open_store_arg(ns, create=False)  # reading never creates a database
    try:
        return asyncio.run(_with_store(store, work))
    except StoreError as exc:
        fail(EXIT_STORE, str(exc))
    except ValueError as exc:  # a cursor this store did not make
        fail(EXIT_USAGE, str(exc))


def cmd_actors(ns: argparse.Namespace) -> int:
    from ._log import escape
    from .catalog import list_actors

    _check(ns)

    async def work(store: Any) -> Any:
        entries: list[Any] = []
        after = ns.after
        while True:  # a filtered page may come back short: go on up to --limit
            page = await list_actors(store, ns.type, ns.namespace, after,
                                     ns.limit - len(entries))
            entries += page.entries
            after = page.next
            if after is None or len(entries) >= ns.limit:
                return entries, after

    entries, nxt = _run(ns, work)
    if not entries and nxt is None and ns.after is None and (ns.type or ns.namespace):
        what = " and ".join(f"{o} {getattr(ns, o)!r}" for o in ("type", "namespace")
                            if getattr(ns, o))
        fail(EXIT_NOT_FOUND, f"no actor of {what} in this store")
    if ns.json:
        print(json.dumps({"actors": [
            {"type": e.type_name, "namespace": e.namespace, "key": e.key, "owner": e.owner,
             "epoch": e.epoch, "active": e.active} for e in entries], "next": nxt}))
        return EXIT_OK
    print(f"{'type':<20} {'namespace':<12} {'key':<24} {'owner':<30} {'epoch':>6}  active")
    for e in entries:
        print(f"{escape(e.type_name):<20} {escape(e.namespace):<12} {escape(e.key):<24} "
              f"{escape(e.owner or '-'):<30} {e.epoch:>6}  {'yes' if e.active else 'no'}")
    if nxt is not None:
        print(f"next: {nxt}")
    return EXIT_OK


def _json_value(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return {"bytes": value.hex()} if isinstance(value, bytes) else {"repr": repr(value)}


def cmd_inspect(ns: argparse.Namespace) -> int:
    from ._log import escape
    from .catalog import inspect_store
    from .ids import ActorId

    _check(ns)
    aid = ActorId(ns.namespace, ns.type, ns.key)

    async def work(store: Any) -> Any:
        owner, epoch = await store.owner_of(aid)
        return owner, epoch, await inspect_store(store, aid, ns.limit)

    owner, epoch, modules = _run(ns, work)
    if modules is None:
        why = "never created" if epoch == 0 else f"destroyed; its epoch {epoch} is kept"
        fail(EXIT_NOT_FOUND, f"no actor {escape(str(aid))} in this store ({why})")
    if ns.json:
        print(json.dumps({"actor": {"type": aid.type_name, "namespace": aid.namespace,
                                    "key": aid.key}, "owner": owner, "epoch": epoch,
                          "modules": {m: [[k, _json_value(v)] for k, v in rows]
                                      for m, rows in modules.items()}}))
        return EXIT_OK
    print(f"{escape(str(aid))}  owner {escape(owner or '-')}  epoch {epoch}")
    if not modules:
        print("(no stored rows)")
    for module, rows in modules.items():
        print(f"[{escape(module)}]")
        for key, value in rows:
            print(f"  {escape(key)} = {escape(repr(value))}")
    return EXIT_OK
