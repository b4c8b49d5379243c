"""Deterministic input for the pipeline: lines of words from a small vocabulary."""

from __future__ import annotations

import random
from collections import Counter

__all__ = ["expected", "lines"]

VOCABULARY = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "so", "te", "vi", "zu")
              for b in ("ba", "de", "fi", "go", "hu", "ja", "ke", "lu", "mo", "ny")]


def lines(n: int, seed: int = 7, words: int = 8) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(1, words)))
            for _ in range(n)]


def expected(text: list[str]) -> dict[str, int]:
    """The exact word counts of ``text``."""
    return dict(Counter(w for line in text for w in line.split()))
