"""`build_hybrid_tree`: WordNet where a class's place is clear, the model where it is not.

The rule (HYBRID_RULE):

1. Build the WordNet tree with the requested levels (`build_wordnet_tree`, same levelling and group
   targets as `--source wordnet`).
2. A class is *ambiguous* when (a) WordNet gives it several direct parents
   (`WordNetPlacement.ambiguous`) or (b) WordNet leaves it *alone*: the group right above it
   (level N-1) holds no other class. Every other class is *clear* and stays exactly where WordNet
   put it (`placed_by: wordnet`).
3. The model sees the level-(N-1) groups that hold at least one clear class (by path, with example
   members) and places every ambiguous class into one of them, or into the extra choice
   "keep WordNet's place", which leaves the class where WordNet put it (`placed_by: llm` either way;
   `llm_reason` says why it was asked). Classes are sent `batch_size` at a time.
4. Groups left without classes are removed; every class stays at depth N.

With one level there are no groups and nothing to ask. When no class is clear, there is no WordNet
group to place into, and the whole tree comes from the model (`build_llm_tree`), every class marked
`placed_by: llm`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from nhlcli.hierarchy.classsets import ClassSet
from nhlcli.hierarchy.llm.builder import (
    LLMOptions,
    build_llm_tree,
    llm_provenance,
    requested_group_counts,
    tree_source_build,
)
from nhlcli.hierarchy.llm.labels import make_labels
from nhlcli.hierarchy.llm.prompts import placement_prompt
from nhlcli.hierarchy.llm.repair import Request, ask_until_valid
from nhlcli.hierarchy.llm.schema import assignment_schema
from nhlcli.hierarchy.llm.session import BuildReport, ProgressFn
from nhlcli.hierarchy.llm.validate import validate_assignment
from nhlcli.hierarchy.sources import TreeSource, register
from nhlcli.hierarchy.tree import Tree, TreeNode

HYBRID_RULE = "nhl-hybrid/1"
KEEP = "keep WordNet's place"
EXAMPLES = 8  # member classes shown per group


def ambiguous_classes(wordnet_tree: Tree, several_parents: set[str]) -> dict[str, str]:
    """Ambiguous class ids of a levelled WordNet tree -> why ("several_parents" or "alone")."""
    out: dict[str, str] = {}
    for c in wordnet_tree.classes:
        if c.id in several_parents:
            out[c.id] = "several_parents"
        elif c.parent is not None and len(wordnet_tree.leaves_under(c.parent)) == 1:
            out[c.id] = "alone"
    return out


def _group_paths(tree: Tree, group_ids: Sequence[str]) -> dict[str, str]:
    """A unique readable label per group: its path of names, e.g. `animal > dog > hound`."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for gid in group_ids:
        label = " > ".join(tree.node(n).name for n in tree.path(gid))
        if label in taken:
            label = f"{label} ({gid})"
        taken.add(label)
        out[gid] = label
    return out


def _wordnet_note(reason: str, tree: Tree, class_id: str, parents: Sequence[str]) -> str:
    if reason == "several_parents":
        return "WordNet parents: " + ", ".join(parents)
    path = " > ".join(tree.node(n).name for n in tree.path(class_id)[:-1])
    return f"alone in WordNet's group {path}"


def build_hybrid_tree(
    classes: ClassSet,
    levels: int,
    groups: list[int] | None,
    options: LLMOptions,
    progress: ProgressFn | None = None,
    report: BuildReport | None = None,
) -> Tree:
    """A levelled tree: WordNet places the clear classes, the model the ambiguous ones.

    Arguments as for `build_llm_tree`.
    """
    report = report if report is not None else BuildReport()
    from nhlcli.hierarchy.wordnet_source import build_wordnet_tree, wordnet_placement_info

    requested_group_counts(len(classes), levels, groups)
    options.check()
    wn_tree = build_wordnet_tree(classes, levels, groups, date=None)
    info = wordnet_placement_info(classes)
    several = {w for w, p in info.items() if p.ambiguous}
    reasons = ambiguous_classes(wn_tree, several) if levels > 1 else {}
    clear = [c.id for c in wn_tree.classes if c.id not in reasons]
    if reasons and not clear:
        report.notes.append("no class has a clear WordNet place: the model built the whole tree")
        tree = build_llm_tree(classes, levels, groups, options, progress, report)
        marked = [
            TreeNode(c.id, c.name, c.parent, {**c.attrs, "placed_by": "llm"}) for c in tree.classes
        ]
        prov = {**tree.provenance, "source": "hybrid", "hybrid_rule": HYBRID_RULE}
        return Tree(marked, tree.nodes, prov)

    targets = list(dict.fromkeys(wn_tree.parent(c) for c in clear))  # level N-1 groups, in order
    target_ids = [t for t in targets if t is not None]
    paths = _group_paths(wn_tree, target_ids)
    labels = make_labels(classes.classes)
    choice: dict[str, str | None] = {}  # ambiguous class -> chosen group id (None: keep)
    session = options.session(progress, report)
    try:
        todo = [c for c in classes.wnids if c in reasons]
        batches = [
            todo[i : i + options.batch_size] for i in range(0, len(todo), options.batch_size)
        ]
        session.plan(len(batches))
        descriptions = []
        for gid in target_ids:
            members = [labels.label(w) for w in wn_tree.leaves_under(gid) if w not in reasons]
            more = f" and {len(members) - EXAMPLES} more" if len(members) > EXAMPLES else ""
            descriptions.append((paths[gid], "e.g. " + ", ".join(members[:EXAMPLES]) + more))
        descriptions.append((KEEP, "the class stays where WordNet put it"))
        names = [name for name, _ in descriptions]
        by_label = {paths[g]: g for g in target_ids}
        for i, batch in enumerate(batches, start=1):
            sub = labels.subset(batch)
            notes = [
                _wordnet_note(reasons[w], wn_tree, w, [n for _, n in info[w].parents])
                for w in batch
            ]
            got = ask_until_valid(
                session,
                Request(
                    "nhl_assignment",
                    f"placing ambiguous classes, batch {i}/{len(batches)}",
                    placement_prompt(sub.labels, descriptions, notes, KEEP),
                    assignment_schema(names, sub.labels),
                ),
                partial(validate_assignment, labels=sub, group_names=names),
            )
            for name, found in got.items():
                for w in found:
                    choice[w] = by_label.get(name)
    finally:
        session.close()
    report.llm_classes = len(reasons)

    wn_prov = wn_tree.provenance
    prov = llm_provenance(
        session,
        "hybrid",
        classes,
        levels,
        groups,
        options,
        hybrid_rule=HYBRID_RULE,
        wordnet={
            "version": wn_prov.get("wordnet"),
            "rules": wn_prov.get("rules"),
            "targets": wn_prov.get("params", {}).get("targets"),
        },
        placed_by={"wordnet": len(clear), "llm": len(reasons)},
    )
    return _rebuild(wn_tree, reasons, choice, prov)


def _rebuild(
    wn_tree: Tree, reasons: dict[str, str], choice: dict[str, str | None], prov: dict[str, Any]
) -> Tree:
    """The WordNet tree with the ambiguous classes moved to their chosen groups, empty ones gone."""
    leaves = []
    for c in wn_tree.classes:
        attrs = dict(c.attrs)
        parent = c.parent
        if c.id in reasons:
            attrs.update(placed_by="llm", llm_reason=reasons[c.id])
            parent = choice.get(c.id) or c.parent
        else:
            attrs["placed_by"] = "wordnet"
        leaves.append(TreeNode(c.id, c.name, parent, attrs))
    used: set[str] = set()
    for leaf in leaves:
        cur = leaf.parent
        while cur is not None and cur not in used:
            used.add(cur)
            cur = wn_tree.parent(cur)
    nodes = [n for n in wn_tree.nodes if n.id in used]
    tree = Tree(leaves, nodes, prov)
    tree.require_levels(wn_tree.levels or 1)
    return tree


register(
    TreeSource(
        "hybrid",
        "WordNet where clear, a chat model where ambiguous",
        LLMOptions,
        tree_source_build(build_hybrid_tree),
    )
)
