"""Which of a model's classes an evaluation covers (`nhl eval --classes SUBSET`)."""

from __future__ import annotations

from pathlib import Path

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import BUILTIN_SETS, ClassRef, load_classes
from nhlcli.hierarchy.tree import Tree
from nhlcli.model.cutout import resolve_selection


def resolve_eval_classes(tree: Tree, spec: str) -> list[str]:
    """Class ids of the tree named by a built-in class set, a class file, or `a,b,c`.

    Items are class ids or names, or tree nodes (a superclass stands for all classes under it). The
    order of the result is the order given; every class must belong to the model.
    """
    if spec in BUILTIN_SETS or Path(spec).is_file():

        def from_tree(token: str) -> list[ClassRef] | None:
            found = tree.find(token)
            if len(found) != 1:
                return None
            return [ClassRef(c, tree.node(c).name) for c in tree.leaves_under(found[0])]

        wnids = load_classes(spec, extra=from_tree).wnids
        outside = [w for w in wnids if not tree.is_class(w)]
        if outside:
            shown = ", ".join(outside[:8]) + (
                f" and {len(outside) - 8} more" if len(outside) > 8 else ""
            )
            raise NhlError(
                f"{len(outside)} class(es) of '{spec}' are not classes of the model: {shown}"
            )
        return list(dict.fromkeys(wnids))
    tokens = [t.strip() for t in spec.split(",") if t.strip()]
    if not tokens:
        raise NhlError("--classes: no classes given")
    return resolve_selection(tree, tokens)
