"""``ActorId``: the name of an actor, known to every layer (a neutral module: it imports
nothing of DNA)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ActorId"]


@dataclass(frozen=True, slots=True)
class ActorId:
    """The cluster-wide name of an actor: the seed's ``{namespace, actor_id, name}``."""

    namespace: str
    type_name: str
    key: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.type_name}/{self.key}"
