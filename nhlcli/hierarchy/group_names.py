"""Names for groups found by clustering: the lowest WordNet hypernym of the members, or the most
central members ("group of tabby, tiger cat, …").

Rules:

- **WordNet.** The lowest common ancestor of the members along the hypernym paths the WordNet
  source keeps (one parent per synset, `wordnet_source.py`), so a name is what the WordNet tree
  would call the smallest category holding all members. A member that is itself that ancestor
  names the group.
- **Central members.** Members ordered by the distance of their class vector to the group's mean
  vector (nearest first; distances equal to 1e-9: class order); the name lists the nearest two,
  and "…" when there are more.
- **Unique per level.** Two groups of one level that get the same name are told apart by their
  most central member: "dog (beagle)", "dog (pug)".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import ClassSet

SHOWN_MEMBERS = 2


def central_order(vectors: np.ndarray, members: Sequence[int]) -> list[int]:
    """Members (row indices) nearest to their mean first; ties keep the given order."""
    sub = vectors[list(members)]
    dist = np.linalg.norm(sub - sub.mean(axis=0, keepdims=True), axis=1)
    order = sorted(range(len(members)), key=lambda i: (round(float(dist[i]), 9), i))
    return [members[i] for i in order]


def central_name(names: Sequence[str], order: Sequence[int]) -> str:
    """ "group of A, B, …" from the members in central order."""
    shown = ", ".join(names[i] for i in order[:SHOWN_MEMBERS])
    return f"group of {shown}{', …' if len(order) > SHOWN_MEMBERS else ''}"


class WordNetNamer:
    """Lowest common WordNet ancestor of classes (by position in the class set)."""

    def __init__(self, classes: ClassSet) -> None:
        from nhlcli.hierarchy.wordnet_source import wordnet_placement_info

        info = wordnet_placement_info(classes)
        self._chains: list[list[tuple[str, str]]] = []
        for ref in classes.classes:
            pl = info[ref.wnid]
            self._chains.append([*pl.path, (ref.wnid, ref.name)])

    def name(self, members: Sequence[int]) -> str:
        chains = [self._chains[i] for i in members]
        common = chains[0]
        for chain in chains[1:]:
            n = 0
            while n < min(len(common), len(chain)) and common[n][0] == chain[n][0]:
                n += 1
            common = common[:n]
        return common[-1][1] if common else "entity"


def wordnet_namer(classes: ClassSet) -> WordNetNamer | None:
    """A namer when WordNet data is installed and every class is a WordNet noun, else None."""
    try:
        return WordNetNamer(classes)
    except NhlError:  # WordNet is missing, or a class id is no WordNet noun synset
        return None


def unique_per_level(names: list[str], levels: Sequence[int], central: Sequence[str]) -> list[str]:
    """Names with clashes inside a level told apart by the group's most central member."""
    seen: dict[tuple[int, str], int] = {}
    for lv, name in zip(levels, names, strict=True):
        seen[(lv, name)] = seen.get((lv, name), 0) + 1
    return [
        f"{name} ({c})" if seen[(lv, name)] > 1 else name
        for lv, name, c in zip(levels, names, central, strict=True)
    ]
