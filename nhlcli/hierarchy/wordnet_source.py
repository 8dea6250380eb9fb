"""Category trees from WordNet: each class's hypernym path (NLTK), levelled by `level_tree`.

A class is any WordNet noun synset (all 1000 ImageNet classes are). Its ancestors are found by
following hypernyms and instance hypernyms up to `entity.n.01`.

**Several parents.** A synset may have several hypernyms (38 ImageNet classes do, and so do some of
their ancestors, e.g. dog.n.01: canine and domestic animal). A tree needs one parent per node, so
for every synset with several parents one is kept, by this rule:

1. the parent with the longest hypernym path up to entity (NLTK's `max_depth`): the most specific
   one;
2. on a tie, the parent that more classes of the set lie under on *every* one of their hypernym
   paths (the parent whose certain members are more numerous in this class set);
3. on a further tie, the smaller wnid.

The choice is made per synset, not per class, so all classes below a multi-parent synset follow the
same path and the result is a tree. dog.n.01 keeps canine (wolves and foxes stay its neighbours),
domestic_cat.n.01 keeps cat, wheeled_vehicle.n.01 keeps vehicle. Classes with several direct
parents are marked in the tree (`attrs: {"ambiguous": true, "wordnet_parents": [chosen,
others...]}`), and `wordnet_placement_info` reports them for other builders (the LLM/hybrid source
re-decides them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nhlcli.errors import MissingWordNetError, NhlError
from nhlcli.hierarchy.classsets import ClassSet, builtin_set
from nhlcli.hierarchy.levelling import (
    TODAY,
    ClassPath,
    check_levels_and_groups,
    default_targets,
    level_tree,
    provenance,
)
from nhlcli.hierarchy.shipped_trees import (
    SHIPPED_LEVELS,
    SHIPPED_SETS,
    resolve_tree,
    shipped_tree_name,
)
from nhlcli.hierarchy.sources import DEFAULT_LEVELS, SourceContext, TreeSource, register
from nhlcli.hierarchy.tree import Tree
from nhlcli.hierarchy.wordnet_data import display_name, get_wordnet, synset_from_wnid, wnid

LEVELLING_RULE = "nhl-levelling/1"
PARENT_RULE = "deepest-parent/1"


@dataclass(frozen=True)
class WordNetPlacement:
    """Where WordNet puts one class, and whether that was a choice."""

    wnid: str
    synset: str
    parents: tuple[tuple[str, str], ...]  # every direct hypernym (wnid, name), the chosen one first
    num_paths: int  # hypernym paths from entity to the class
    path: tuple[tuple[str, str], ...]  # the chosen ancestors, entity first

    @property
    def ambiguous(self) -> bool:
        """The class has several direct parents in WordNet."""
        return len(self.parents) > 1

    @property
    def chosen(self) -> str | None:
        return self.parents[0][0] if self.parents else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "wnid": self.wnid,
            "synset": self.synset,
            "ambiguous": self.ambiguous,
            "chosen": self.chosen,
            "parents": [{"wnid": w, "name": n} for w, n in self.parents],
            "num_paths": self.num_paths,
            "path": [{"wnid": w, "name": n} for w, n in self.path],
        }


class _Hypernyms:
    """The hypernym graph above a set of class synsets, with the parent choice of the module rule.

    Works on wnids; `synset(id)` gives the NLTK synset back.
    """

    def __init__(self, synsets: Sequence[Any]) -> None:
        self._parents: dict[str, list[str]] = {}  # wnid -> parent wnids, sorted
        self._by_id: dict[str, Any] = {}
        self._depth: dict[str, int] = {}  # longest path up to entity
        self._sure: dict[
            str, frozenset[str]
        ] = {}  # ids on every path from entity (itself included)
        self._paths: dict[str, int] = {}
        self._choice: dict[str, str | None] = {}
        self.class_ids = [self._visit(s) for s in synsets]
        cover: dict[str, int] = {}
        for cid in self.class_ids:
            for a in self._sure[cid]:
                if a != cid:
                    cover[a] = cover.get(a, 0) + 1
        self._cover = cover

    def _visit(self, s: Any) -> str:
        """Fill parents/depth/sure/paths for s and its ancestors (iteratively, parents first)."""
        root_id = wnid(s)
        self._by_id.setdefault(root_id, s)
        stack = [root_id]
        while stack:
            cid = stack[-1]
            if cid in self._depth:
                stack.pop()
                continue
            if cid not in self._parents:
                cur = self._by_id[cid]
                found = {wnid(p): p for p in (*cur.hypernyms(), *cur.instance_hypernyms())}
                for pid, p in found.items():
                    self._by_id.setdefault(pid, p)
                self._parents[cid] = sorted(found)
            pending = [p for p in self._parents[cid] if p not in self._depth]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            ps = self._parents[cid]
            if not ps:
                self._depth[cid], self._sure[cid], self._paths[cid] = 0, frozenset({cid}), 1
                continue
            self._depth[cid] = 1 + max(self._depth[p] for p in ps)
            self._sure[cid] = frozenset.intersection(*(self._sure[p] for p in ps)) | {cid}
            self._paths[cid] = sum(self._paths[p] for p in ps)
        return root_id

    def synset(self, node_id: str) -> Any:
        return self._by_id[node_id]

    def parents_ranked(self, node_id: str) -> list[str]:
        """Direct parents, the kept one first (deepest, more sure members, smaller wnid)."""
        return sorted(
            self._parents[node_id], key=lambda p: (-self._depth[p], -self._cover.get(p, 0), p)
        )

    def chosen_path(self, node_id: str) -> list[str]:
        """Ancestors of a node along the kept parents, entity first (the node excluded)."""
        out: list[str] = []
        cur = node_id
        while True:
            if cur not in self._choice:
                ranked = self.parents_ranked(cur)
                self._choice[cur] = ranked[0] if ranked else None
            nxt = self._choice[cur]
            if nxt is None:
                return out[::-1]
            out.append(nxt)
            cur = nxt

    def num_paths(self, node_id: str) -> int:
        return self._paths[node_id]


def _synsets(classes: ClassSet) -> list[Any]:
    get_wordnet()  # the install hint comes first when WordNet is missing
    return [synset_from_wnid(w) for w in classes.wnids]


def wordnet_placement_info(classes: ClassSet) -> dict[str, WordNetPlacement]:
    """For every class (by wnid): its WordNet parents, the kept one first, and the kept path."""
    graph = _Hypernyms(_synsets(classes))
    names: dict[str, str] = {}

    def named(node_id: str) -> tuple[str, str]:
        if node_id not in names:
            names[node_id] = display_name(graph.synset(node_id))
        return node_id, names[node_id]

    out = {}
    for cid in graph.class_ids:
        out[cid] = WordNetPlacement(
            wnid=cid,
            synset=str(graph.synset(cid).name()),
            parents=tuple(named(p) for p in graph.parents_ranked(cid)),
            num_paths=graph.num_paths(cid),
            path=tuple(named(a) for a in graph.chosen_path(cid)),
        )
    return out


def wordnet_class_paths(classes: ClassSet) -> list[ClassPath]:
    """Each class with its kept WordNet ancestors (for `level_tree`)."""
    info = wordnet_placement_info(classes)
    paths = []
    for ref in classes.classes:
        pl = info[ref.wnid]
        attrs: dict[str, Any] = {}
        if pl.ambiguous:
            attrs = {"ambiguous": True, "wordnet_parents": [w for w, _ in pl.parents]}
        paths.append(ClassPath(ref.wnid, ref.name, pl.path, attrs))
    return paths


def build_wordnet_tree(
    classes: ClassSet,
    levels: int = 3,
    groups: Sequence[int] | None = None,
    date: str | None = TODAY,
) -> Tree:
    """The WordNet tree of a class set with exactly `levels` levels.

    groups: nodes wanted at levels 1..levels-1 (default: round(C^(k/levels))). date: "today"
    stamps today's date in the provenance, None leaves it out (byte-identical rebuilds), any other
    string is kept.
    """
    if len(classes) == 0:
        raise NhlError("the class set is empty")
    check_levels_and_groups(levels, groups, len(classes))
    paths = wordnet_class_paths(classes)
    wn = get_wordnet()
    targets = list(groups) if groups is not None else default_targets(len(classes), levels)
    prov = provenance(
        "wordnet",
        {
            "classes": classes.name,
            "num_classes": len(classes),
            "levels": levels,
            "groups": list(groups) if groups is not None else None,
            "targets": targets,
        },
        date=date,
        wordnet=str(wn.get_version()),
        rules={"levelling": LEVELLING_RULE, "several_parents": PARENT_RULE},
    )
    return level_tree(paths, levels, targets, prov)


# ------------------------------------------------------------------------------ the source
@dataclass
class WordNetOptions:
    """WordNet has no options: its hypernyms and the levelling rule decide."""


def _wordnet(
    classes: ClassSet, levels: int | None, groups: list[int] | None, _: WordNetOptions,
    ctx: SourceContext,
) -> Tree:  # fmt: skip
    """`--source wordnet`; without WordNet data, the shipped tree of a built-in set (the same)."""
    n = DEFAULT_LEVELS if levels is None else levels
    try:
        return build_wordnet_tree(classes, n, groups, date=ctx.date)
    except MissingWordNetError:
        name = classes.name
        if (
            groups is not None
            or name not in SHIPPED_SETS
            or n not in SHIPPED_LEVELS
            or classes != builtin_set(name)
        ):
            raise
        shipped = shipped_tree_name(name, n)
        ctx.notes.append(
            f"WordNet data is not installed: used the shipped tree {shipped} (the same tree a "
            "fresh build gives); `python -m nltk.downloader wordnet` enables every class set"
        )
        date = provenance("wordnet", {}, date=ctx.date)["date"]
        return resolve_tree(shipped).with_provenance(date=date)


register(TreeSource("wordnet", "WordNet hypernyms, levelled", WordNetOptions, _wordnet))
