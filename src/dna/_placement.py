"""Where a name should live: weighted rendezvous hashing over the hosting nodes.

Every node computes the same answer from the same node list, with no
coordination: the node with the highest score for a name wins, and a node
that joins or leaves moves only the names it wins or held. A node's weight
(``Node(weight=...)``, ``dna node --weight``) makes it win that share of names:
score = -w / ln(h), h the name's hash with the node in (0, 1), so node i wins
with probability w_i / sum(w) (weighted rendezvous hashing).

A node's weight travels in its node id (suffix ``-w<weight>``, absent for 1):
like the start time already there, it is fixed for the node's life, and every
store's node record carries it with no change of schema.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ids import ActorId
    from .store import NodeRecord

__all__ = ["candidates", "node_weight", "place", "score", "with_weight"]

_SUFFIX = "-w"


def with_weight(node_id: str, weight: float) -> str:
    """``node_id`` marked with ``weight`` (unchanged for the default weight 1)."""
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"a node's weight must be a positive number, got {weight!r}")
    if weight == 1:
        return node_id
    return f"{node_id}{_SUFFIX}{weight:g}"


def node_weight(node_id: str) -> float:
    """The weight a node id carries (1 when it carries none or a malformed one)."""
    head, sep, tail = node_id.rpartition(_SUFFIX)
    if not sep or not head:
        return 1.0
    try:
        w = float(tail)
    except ValueError:
        return 1.0
    return w if math.isfinite(w) and w > 0 else 1.0


def _hash01(aid: ActorId, node_id: str) -> float:
    """A uniform number in (0, 1), fixed for the pair."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{aid.namespace}\0{aid.type_name}\0{aid.key}\0{node_id}".encode(
        "utf-8", "surrogatepass"))
    return (int.from_bytes(h.digest(), "big") + 0.5) / 18446744073709551616.0


def score(aid: ActorId, node_id: str, weight: float | None = None) -> float:
    """How much ``node_id`` wants ``aid`` (highest wins): ``-w / ln(h)``."""
    w = node_weight(node_id) if weight is None else weight
    return -w / math.log(_hash01(aid, node_id))


def candidates(peers: Iterable[NodeRecord], *, exclude: str | None = None) -> list[NodeRecord]:
    """The nodes that may host new names: live, not draining (client nodes drain),
    reachable, and not ``exclude``."""
    return [r for r in peers
            if r.node_id != exclude and not r.draining and r.alive is not False and r.address]


def place(aid: ActorId, node_ids: Iterable[str]) -> str | None:
    """The node among ``node_ids`` that wins ``aid`` (None when there is none)."""
    best: str | None = None
    best_score = -1.0
    for node_id in node_ids:
        s = score(aid, node_id)
        if s > best_score:
            best, best_score = node_id, s
    return best
