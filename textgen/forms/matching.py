"""Whether every keyword of a form gets a place of its own (a verse, a sentence): a bipartite matching.

The Tang and ci lookaheads both ask it of a handful of keywords, so augmenting paths (Kuhn's
algorithm) are plenty.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence, Set


def every_one_placed(options: Sequence[Set[Hashable]]) -> bool:
    """Whether each item ``k`` can take one place of ``options[k]``, no place taken twice."""
    owner: dict[Hashable, int] = {}

    def place(k: int, seen: set) -> bool:
        for v in options[k]:
            if v in seen:
                continue
            seen.add(v)
            if v not in owner or place(owner[v], seen):
                owner[v] = k
                return True
        return False

    return all(place(k, set()) for k in range(len(options)))
