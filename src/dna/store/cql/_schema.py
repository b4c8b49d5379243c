"""The CQL schema of ``ScyllaStore`` and every statement it prepares.

One table holds an actor's ownership and all its storage (DESIGN.md, "CQL
layout"): a conditional batch must stay in one partition of one table, so the
claim (static columns) and the rows of every storage module share the
partition ``(namespace, type_name, key)``. ``marker`` is a static column each
claim, release and commit overwrites with a fresh random number: after a
timeout, a SERIAL read of it tells whether that write applied.

Runs on a driver ``Session`` in a worker thread (``open``), never on the loop.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ...errors import StoreError
from ._legacy import OLD_TABLES, migrate_timer_index

__all__ = ["Statements", "check_keyspace", "create_schema", "replication_map"]

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}\Z")

_ACTOR_DATA = """
CREATE TABLE IF NOT EXISTS {ks}.actor_data (
    namespace text,
    type_name text,
    key text,
    module text,
    k text,
    owner text static,
    epoch bigint static,
    claimed_at timestamp static,
    marker bigint static,
    v blob,
    PRIMARY KEY ((namespace, type_name, key), module, k)
) WITH comment = 'DNA: one partition per actor, ownership in static columns'
"""

_NODES = """
CREATE TABLE IF NOT EXISTS {ks}.nodes (
    node_id text PRIMARY KEY,
    address text,
    heartbeat bigint,
    draining boolean,
    load bigint,
    started_at timestamp
) WITH comment = 'DNA: cluster membership and heartbeats'
"""

# Timers' due index (see _timers): one partition per actor type and minute of due
# time, so a node reads only the types it serves. An entry is written before the
# commit that stores its timer and deleted only once that setting of the timer is
# known gone, so a crash leaves at most a stale entry.
_TIMER_DUE = """
CREATE TABLE IF NOT EXISTS {ks}.timers_due (
    type_name text,
    bucket bigint,
    due bigint,
    namespace text,
    key text,
    name text,
    setting blob,
    PRIMARY KEY ((type_name, bucket), due, namespace, key, name, setting)
) WITH comment = 'DNA: timers due index, one partition per actor type and minute'
"""

_TIMER_SCAN = """
CREATE TABLE IF NOT EXISTS {ks}.timers_scan (
    type_name text PRIMARY KEY,
    low bigint
) WITH comment = 'DNA: per actor type, the oldest timers_due bucket that may hold entries'
"""

# Slot leases (activation=slots, see _slots): one row per slot of the name space.
# ``clean``: the last holder released it with every commit answered, so a new
# holder needs no per-actor fence. Never read on the per-actor path.
_SLOTS = """
CREATE TABLE IF NOT EXISTS {ks}.slots (
    slot int PRIMARY KEY,
    holder text,
    epoch bigint,
    clean boolean,
    marker bigint
) WITH comment = 'DNA: leases of slots of the actor name space (activation=slots)'
"""

# Keyspace-wide settings fixed by the first node that opened it: ``activation`` (how
# ownership is taken: "actor", or "slots/<count>"). Mixing the two in one keyspace
# would compare per-actor epochs with slot epochs, so a node of the other kind is
# refused at open.
_SETTINGS = """
CREATE TABLE IF NOT EXISTS {ks}.settings (
    name text PRIMARY KEY,
    value text
) WITH comment = 'DNA: keyspace-wide settings, fixed at first open'
"""

_PK = "namespace = ? AND type_name = ? AND key = ?"
_ROW = _PK + " AND module = ? AND k = ?"

# name -> CQL; every statement DNA runs against its tables is one of these
STATEMENTS: dict[str, str] = {
    # claims and releases: LWT on the static columns
    "claim": "UPDATE {ks}.actor_data SET owner = ?, epoch = ?, claimed_at = ?, marker = ? "
    f"WHERE {_PK} IF owner = ? AND epoch = ?",
    "release": f"UPDATE {{ks}}.actor_data SET owner = null, marker = ? WHERE {_PK} "
    "IF owner = ? AND epoch = ?",
    "state": f"SELECT owner, epoch, marker FROM {{ks}}.actor_data WHERE {_PK} LIMIT 1",
    # commits: the fence opens every batch, then the rows
    "fence": f"UPDATE {{ks}}.actor_data SET epoch = ?, marker = ? WHERE {_PK} "
    "IF owner = ? AND epoch = ?",
    "put": f"UPDATE {{ks}}.actor_data SET v = ? WHERE {_ROW}",
    "delete": f"DELETE FROM {{ks}}.actor_data WHERE {_ROW}",
    # reads
    "read": f"SELECT v FROM {{ks}}.actor_data WHERE {_ROW}",
    "list_ge": f"SELECT k, v FROM {{ks}}.actor_data WHERE {_PK} AND module = ? AND k >= ? LIMIT ?",
    "list_gt": f"SELECT k, v FROM {{ks}}.actor_data WHERE {_PK} AND module = ? AND k > ? LIMIT ?",
    "list_ge_lt": f"SELECT k, v FROM {{ks}}.actor_data WHERE {_PK} AND module = ? "
    "AND k >= ? AND k < ? LIMIT ?",
    "list_gt_lt": f"SELECT k, v FROM {{ks}}.actor_data WHERE {_PK} AND module = ? "
    "AND k > ? AND k < ? LIMIT ?",
    # activation=slots (see _slots): the slot leases, and the per-actor fence that
    # opens every commit (and the first read after an unclean takeover) of that path
    "slot_take": "UPDATE {ks}.slots SET holder = ?, epoch = ?, clean = false, marker = ? "
    "WHERE slot = ? IF holder = ? AND epoch = ? AND clean = ?",
    "slot_free": "UPDATE {ks}.slots SET holder = null, clean = ?, marker = ? WHERE slot = ? "
    "IF holder = ? AND epoch = ?",
    "slot_get": "SELECT holder, epoch, clean, marker FROM {ks}.slots WHERE slot = ?",
    # every slot's row at once: guesses for a burst of takes (Slots._guess)
    "slot_all": "SELECT slot, holder, epoch, clean FROM {ks}.slots",
    "slot_fence": "UPDATE {ks}.actor_data SET epoch = ?, owner = ?, claimed_at = ?, marker = ? "
    f"WHERE {_PK} IF epoch <= ?",
    "slot_fence_new": "UPDATE {ks}.actor_data SET epoch = ?, owner = ?, claimed_at = ?, "
    f"marker = ? WHERE {_PK} IF epoch = null",
    "slot_destroy": "UPDATE {ks}.actor_data SET owner = null, claimed_at = null, epoch = ?, "
    f"marker = ? WHERE {_PK} IF epoch <= ?",
    "slot_destroy_new": "UPDATE {ks}.actor_data SET owner = null, claimed_at = null, "
    f"epoch = ?, marker = ? WHERE {_PK} IF epoch = null",
    "setting_init": "INSERT INTO {ks}.settings (name, value) VALUES (?, ?) IF NOT EXISTS",
    # membership
    "node_up": "INSERT INTO {ks}.nodes (node_id, address, heartbeat, draining, load, started_at) "
    "VALUES (?, ?, ?, false, 0, toTimestamp(now()))",
    # a heartbeat also writes the address: it rebuilds a row collected while we were paused
    "node_beat": "UPDATE {ks}.nodes SET heartbeat = ?, address = ? WHERE node_id = ?",
    "node_beat_load": "UPDATE {ks}.nodes SET heartbeat = ?, address = ?, load = ? "
    "WHERE node_id = ?",
    "node_draining": "UPDATE {ks}.nodes SET draining = ? WHERE node_id = ?",
    "node_down": "DELETE FROM {ks}.nodes WHERE node_id = ?",
    # garbage collection of a dead node's row, only if its counter did not move meanwhile
    "node_collect": "DELETE FROM {ks}.nodes WHERE node_id = ? IF heartbeat = ?",
    "node_get": "SELECT heartbeat, draining FROM {ks}.nodes WHERE node_id = ?",
    "node_all": "SELECT node_id, address, heartbeat, draining, load FROM {ks}.nodes",
    # timers' due index
    "timer_put": "INSERT INTO {ks}.timers_due (type_name, bucket, due, namespace, key, name, "
    "setting) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "timer_due": "SELECT due, namespace, key, name, setting FROM {ks}.timers_due "
    "WHERE type_name = ? AND bucket = ? AND due >= ? AND due <= ? LIMIT ?",
    "timer_due_after": "SELECT due, namespace, key, name, setting FROM {ks}.timers_due "
    "WHERE type_name = ? AND bucket = ? AND (due) <= (?) AND (due, namespace, key, name, "
    "setting) > (?, ?, ?, ?, ?) LIMIT ?",
    "timer_forget": "DELETE FROM {ks}.timers_due WHERE type_name = ? AND bucket = ? AND due = ? "
    "AND namespace = ? AND key = ? AND name = ? AND setting = ?",
    "timer_low": "SELECT low FROM {ks}.timers_scan WHERE type_name = ?",
    "timer_types": "SELECT type_name FROM {ks}.timers_scan",
    "timer_low_set": "UPDATE {ks}.timers_scan SET low = ? WHERE type_name = ?",
    "timer_low_init": "INSERT INTO {ks}.timers_scan (type_name, low) VALUES (?, ?) "
    "IF NOT EXISTS",
    # the actor catalog (see _catalog): a destroy is one fenced batch of these two ...
    "destroy_fence": "UPDATE {ks}.actor_data SET owner = null, claimed_at = null, epoch = ?, "
    f"marker = ? WHERE {_PK} IF owner = ? AND epoch = ?",
    "destroy_rows": f"DELETE FROM {{ks}}.actor_data WHERE {_PK} AND module >= ''",
    # ... listing walks the ring by token, reading one static row per partition
    "catalog": "SELECT DISTINCT namespace, type_name, key, owner, epoch, claimed_at, "
    "token(namespace, type_name, key) FROM {ks}.actor_data "
    "WHERE token(namespace, type_name, key) > ? LIMIT ?",
    "dump": f"SELECT module, k, v, claimed_at FROM {{ks}}.actor_data WHERE {_PK} LIMIT ?",
}


class Statements:
    """Every statement of ``STATEMENTS``, prepared on one session (attribute per name)."""

    claim: Any
    release: Any
    state: Any
    fence: Any
    put: Any
    delete: Any
    read: Any
    list_ge: Any
    list_gt: Any
    list_ge_lt: Any
    list_gt_lt: Any
    slot_take: Any
    slot_free: Any
    slot_get: Any
    slot_all: Any
    slot_fence: Any
    slot_fence_new: Any
    slot_destroy: Any
    slot_destroy_new: Any
    setting_init: Any
    node_up: Any
    node_beat: Any
    node_beat_load: Any
    node_draining: Any
    node_down: Any
    node_collect: Any
    node_get: Any
    node_all: Any
    timer_put: Any
    timer_due: Any
    timer_due_after: Any
    timer_forget: Any
    timer_low: Any
    timer_types: Any
    timer_low_set: Any
    timer_low_init: Any
    destroy_fence: Any
    destroy_rows: Any
    catalog: Any
    dump: Any

    def __init__(self, session: Any, keyspace: str) -> None:
        for name, cql in STATEMENTS.items():
            setattr(self, name, session.prepare(cql.format(ks=keyspace)))


def check_keyspace(keyspace: str) -> str:
    """``keyspace`` in lower case (CQL folds it) if a plain identifier, else ``ValueError``."""
    if not _IDENT.match(keyspace):
        raise ValueError(
            f"keyspace must be a letter then up to 47 letters, digits or '_': {keyspace!r}"
        )
    return keyspace.lower()


def replication_map(replication: Mapping[str, Any] | None) -> str:
    """The CQL map literal of a replication setting (default: SimpleStrategy, rf 1)."""
    if replication is None:
        replication = {"class": "SimpleStrategy", "replication_factor": 1}
    if "class" not in replication:
        raise ValueError("replication needs a 'class' (SimpleStrategy, NetworkTopologyStrategy)")
    parts = []
    for name, value in replication.items():
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ValueError(f"replication[{name!r}] must be a str or int, not {value!r}")
        parts.append(f"{_quote(str(name))}: {_quote(str(value))}")
    return "{" + ", ".join(parts) + "}"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def is_scylla(session: Any) -> bool:
    """Whether the server is ScyllaDB (it has tables Cassandra lacks)."""
    rows = session.execute(
        "SELECT table_name FROM system_schema.tables "
        "WHERE keyspace_name = 'system' AND table_name = 'scylla_local'"
    )
    return bool(list(rows))


def create_schema(session: Any, keyspace: str, replication: str, create: bool = True) -> None:
    """Create the keyspace and tables if missing (blocking; run in a worker thread).
    ``create`` False: a missing keyspace or table is a ``StoreError`` instead.

    On ScyllaDB the keyspace is created without tablets: ScyllaDB does not
    support lightweight transactions on tablets keyspaces, and every claim and
    commit is one. An existing tablets keyspace is refused with ``StoreError``.
    """
    scylla = is_scylla(session)
    meta = session.cluster.metadata.keyspaces.get(keyspace)
    if meta is None and not create:
        raise StoreError(f"CQL keyspace {keyspace} does not exist (no DNA store there)")
    if meta is None:
        ddl = f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}"
        if scylla:
            try:
                session.execute(ddl + " AND tablets = {'enabled': false}")
            except Exception as exc:  # ScyllaDB before tablets: no such option
                if "tablets" not in str(exc).lower():
                    raise
                session.execute(ddl)
        else:
            session.execute(ddl)
    elif scylla:
        _refuse_tablets(session, keyspace)
    meta = session.cluster.metadata.keyspaces.get(keyspace)
    tables = meta.tables if meta is not None else {}
    for name, ddl in (("actor_data", _ACTOR_DATA), ("nodes", _NODES)):
        if name not in tables and not create:
            raise StoreError(f"CQL keyspace {keyspace} has no table {name}: not a DNA store")
        if name not in tables:
            session.execute(ddl.format(ks=keyspace))
    for name, ddl in (("timers_due", _TIMER_DUE), ("timers_scan", _TIMER_SCAN),
                      ("slots", _SLOTS), ("settings", _SETTINGS)):
        if name not in tables:  # a DNA keyspace from before timers (or slots) gets them too
            session.execute(ddl.format(ks=keyspace))
    if OLD_TABLES[0] in tables:  # the first release's index: carried over, then dropped
        migrate_timer_index(session, keyspace, STATEMENTS["timer_put"].format(ks=keyspace))


def _refuse_tablets(session: Any, keyspace: str) -> None:
    try:
        rows = list(
            session.execute(
                "SELECT initial_tablets FROM system_schema.scylla_keyspaces "
                "WHERE keyspace_name = %s",
                (keyspace,),
            )
        )
    except Exception:  # ScyllaDB before tablets: no such table, nothing to refuse
        return
    if rows and rows[0][0] is not None:
        raise StoreError(
            f"keyspace {keyspace} uses tablets, and ScyllaDB does not support lightweight "
            "transactions there: use a keyspace created with tablets = {'enabled': false} "
            "(ScyllaStore creates it so when it is missing)"
        )
