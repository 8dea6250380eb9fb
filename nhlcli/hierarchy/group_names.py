"""Names for groups found by clustering: the lowest WordNet hypernym of the members, or the
members themselves ("gas pump + 2 more").

Rules (each group gets one readable name, never a bare id, never a word twice):

- **WordNet.** The lowest common ancestor of the members along the hypernym paths the WordNet
  source keeps (one parent per synset, `wordnet_source.py`), by its readable lemma (the synset's
  first lemma, underscores as spaces: "musical instrument"), so a name is what the WordNet tree
  would call the smallest category holding all members. A member that is itself that ancestor
  names the group.
- **Too general a hypernym names nothing.** An ancestor in the top four levels of WordNet's noun
  hierarchy (depth 0 to `GENERIC_DEPTH` = 3 on the kept path: entity; physical entity,
  abstraction; object, matter, group; whole, substance, …) says nothing about the members: a
  group that only such an ancestor holds together (tench with gas pump: "whole") is named after
  its members instead.
- **Members.** Members ordered by the distance of their class vector to the group's mean vector
  (nearest first; distances equal to 1e-9: class order): one member "A", two "A + B", more
  "A + k more" (`members_name`). Groups named without WordNet are named this way.
- **Unique per level.** Two groups of one level that get the same name keep it and add their
  members after a colon: "dog: beagle + 2 more", "dog: pug + Shih-Tzu".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import ClassSet

GENERIC_DEPTH = 3  # hypernyms this close to WordNet's root (entity = 0) are too general to name


def central_order(vectors: np.ndarray, members: Sequence[int]) -> list[int]:
    """Members (row indices) nearest to their mean first; ties keep the given order."""
    sub = vectors[list(members)]
    dist = np.linalg.norm(sub - sub.mean(axis=0, keepdims=True), axis=1)
    order = sorted(range(len(members)), key=lambda i: (round(float(dist[i]), 9), i))
    return [members[i] for i in order]


def members_name(names: Sequence[str], order: Sequence[int]) -> str:
    """A group named after its members in central order: "A", "A + B", "A + k more".

    >>> members_name(["tench", "gas pump", "church"], [1, 0, 2])
    'gas pump + 2 more'
    >>> members_name(["tench", "gas pump"], [0, 1])
    'tench + gas pump'
    """
    first = names[order[0]]
    if len(order) == 1:
        return first
    if len(order) == 2:
        return f"{first} + {names[order[1]]}"
    return f"{first} + {len(order) - 1} more"


class WordNetNamer:
    """Lowest common WordNet ancestor of classes (by position in the class set)."""

    def __init__(self, classes: ClassSet) -> None:
        from nhlcli.hierarchy.wordnet_source import wordnet_placement_info

        info = wordnet_placement_info(classes)
        self._chains: list[list[tuple[str, str]]] = []
        for ref in classes.classes:
            pl = info[ref.wnid]
            self._chains.append([*pl.path, (ref.wnid, ref.name)])

    def name(self, members: Sequence[int]) -> str | None:
        """The readable lemma of the members' lowest common ancestor; None when that ancestor is
        too general to name them (within `GENERIC_DEPTH` of WordNet's root)."""
        chains = [self._chains[i] for i in members]
        common = chains[0]
        for chain in chains[1:]:
            n = 0
            while n < min(len(common), len(chain)) and common[n][0] == chain[n][0]:
                n += 1
            common = common[:n]
        if not common:
            return None
        wnid, name = common[-1]
        is_member = any(chain[-1][0] == wnid for chain in chains)  # a member names its group
        return name if is_member or len(common) > GENERIC_DEPTH + 1 else None


def wordnet_namer(classes: ClassSet) -> WordNetNamer | None:
    """A namer when WordNet data is installed and every class is a WordNet noun, else None."""
    try:
        return WordNetNamer(classes)
    except NhlError:  # WordNet is missing, or a class id is no WordNet noun synset
        return None


def unique_per_level(names: list[str], levels: Sequence[int], members: Sequence[str]) -> list[str]:
    """Names with clashes inside a level told apart by the groups' members ("dog: beagle + 2
    more"); `members` holds each group's `members_name`."""
    seen: dict[tuple[int, str], int] = {}
    for lv, name in zip(levels, names, strict=True):
        seen[(lv, name)] = seen.get((lv, name), 0) + 1
    return [
        f"{name}: {m}" if seen[(lv, name)] > 1 and name != m else name
        for lv, name, m in zip(levels, names, members, strict=True)
    ]
