"""Stores: the only package that imports a database driver."""

from __future__ import annotations

from ._url import open_store
from .base import ActorId, Claim, NodeRecord, Row, Store

__all__ = ["ActorId", "Claim", "NodeRecord", "Row", "Store", "open_store"]
