"""Rebalancing: a node that holds more than its share of the cluster's activations
hands the surplus to peers that hold less, at a bounded rate.

Every ``interval`` seconds a node with rebalancing on (``Node(rebalance_rate=R)``,
``dna node --rebalance-rate R``) publishes its activation count, reads every
hosting node's, and computes its fair share: the total times its weight over
the sum of weights. When it holds more than its share (beyond a tolerance), it
moves the surplus, at most ``R`` actors a second, to peers below their share:
first the names weighted rendezvous hashing places on such a peer, then any
others, each to the underloaded peer that scores highest for it.

A move is the drain hand-over of one actor: the activation finishes its
batch, commits its writes and releases its name; the queued messages, in
order, and every later message follow it to the peer over the node's route,
and the peer, asked at once, claims the name (no lease wait). A call caught in
a move is answered by the peer, or fails with a retryable error.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._core import BLOCKED, IDLE, RUNNING, SCHEDULED
from ._placement import candidates, node_weight, place, score

if TYPE_CHECKING:
    from .ids import ActorId
    from .store import NodeRecord

__all__ = ["Rebalancer", "plan_moves"]

log = logging.getLogger("dna.rebalance")

_MOVABLE = (IDLE, SCHEDULED, RUNNING, BLOCKED)  # activated and not closing


def plan_moves(
    me: str,
    mine: Sequence[ActorId],
    loads: Mapping[str, int],
    *,
    limit: int,
    tolerance: float = 0.02,
    min_surplus: float = 2.0,
) -> list[tuple[ActorId, str]]:
    """Which of ``mine`` to hand to which peer, at most ``limit`` moves.

    ``loads``: activations per hosting node, ``me`` included; weights come from
    the node ids. Nothing moves unless ``me`` holds more than its fair share by
    more than ``max(min_surplus, tolerance * share)``; then it sheds down to its
    share, never filling a peer past its own.
    """
    if me not in loads or len(loads) < 2 or limit <= 0:
        return []
    weights = {n: node_weight(n) for n in loads}
    total = sum(loads.values())
    wsum = sum(weights.values())
    fair = {n: total * w / wsum for n, w in weights.items()}
    surplus = loads[me] - fair[me]
    if surplus <= max(min_surplus, tolerance * fair[me]):
        return []
    wanted = min(limit, int(surplus), len(mine))
    room = {n: fair[n] - loads[n] for n in loads if n != me and fair[n] - loads[n] >= 0.5}
    moves: list[tuple[ActorId, str]] = []
    nodes = list(loads)
    left: list[ActorId] = []
    scan = max(256, 8 * wanted)  # bounds the hashing per round on a node of many actors
    for aid in mine[:scan]:  # first the names rendezvous places on an underloaded peer
        if len(moves) >= wanted or not room:
            break
        top = place(aid, nodes)
        if top is not None and top in room:
            moves.append((aid, top))
            _take(room, top)
        else:
            left.append(aid)
    left.extend(mine[scan:scan + wanted])
    for aid in left:  # then any, each to the underloaded peer that wants it most
        if len(moves) >= wanted or not room:
            break
        target = max(room, key=lambda n: score(aid, n))
        moves.append((aid, target))
        _take(room, target)
    return moves


def _take(room: dict[str, float], node_id: str) -> None:
    room[node_id] -= 1
    if room[node_id] < 0.5:
        del room[node_id]


class Rebalancer:
    """The periodic task of one node (see the module docstring)."""

    def __init__(self, node: Any, rate: float, interval: float = 1.0,
                 tolerance: float = 0.02) -> None:
        if not rate > 0 or not interval > 0:
            raise ValueError("rebalance_rate and rebalance_interval must be positive")
        self.node = node  # dna.Node
        self.rate = rate  # hand-overs started per second, at most
        self.interval = interval  # seconds between rounds
        self.tolerance = tolerance  # surplus (fraction of the share) tolerated
        self.moved = 0  # actors handed over so far

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)  # a period, not a synchronisation
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store may be away for a while: next round
                log.warning("rebalancing round failed: %r", exc)

    async def round(self) -> int:
        """One round: publish our load, read the peers', move the surplus. Returns
        how many actors were handed over."""
        node = self.node
        if node.draining or not node.running:
            return 0
        cluster = node.cluster
        await cluster.report_load()
        await cluster.refresh_peers()
        me = node.node_id
        acts = {a.aid: a for a in node.local_activations() if a.state in _MOVABLE}
        # peers judged alive only (a lease store's "unknown" may be a dead node's row)
        hosts = {r.node_id: r for r in candidates(cluster.peers, exclude=me) if r.alive}
        loads = {n: r.load for n, r in hosts.items()}
        loads[me] = node.activations
        plan = plan_moves(me, list(acts), loads, limit=math.ceil(self.rate * self.interval),
                          tolerance=self.tolerance)
        if not plan:
            return 0
        log.info("rebalancing: handing %d of %d actors to peers", len(plan), loads[me])
        return await self._execute([(acts[aid], hosts[n]) for aid, n in plan])

    async def _execute(self, moves: list[tuple[Any, NodeRecord]]) -> int:
        """Start the hand-overs ``1/rate`` s apart; wait for them all."""
        node = self.node
        loop = node.loop
        start = loop.time()
        tasks = []
        for i, (act, rec) in enumerate(moves):
            delay = start + i / self.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # the rate limit
            if node.draining or not node.running:
                break
            tasks.append(node.spawn(node.hand_over(act, rec)))
        if not tasks:
            return 0
        await asyncio.wait(tasks)
        moved = sum(1 for t in tasks if not t.cancelled() and t.exception() is None
                    and t.result())
        self.moved += moved
        return moved
