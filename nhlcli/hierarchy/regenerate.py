"""Rebuild the shipped WordNet trees in `hierarchies/trees/` with nhl itself.

    python -m nhlcli.hierarchy.regenerate           # rewrite the files that changed
    python -m nhlcli.hierarchy.regenerate --check   # exit 1 if any file is not current

Each tree is `build_wordnet_tree(<built-in set>, levels, date=None)` (date pinned, so rebuilds are
byte-identical); run this after changing the levelling or WordNet rules, or the nhl version.
"""

from __future__ import annotations

import argparse
import sys

from nhlcli.fileio import write_text_atomic
from nhlcli.hierarchy.classsets import builtin_set
from nhlcli.hierarchy.shipped_trees import SHIPPED_LEVELS, SHIPPED_SETS, shipped_tree_name
from nhlcli.hierarchy.tree import Tree
from nhlcli.resources import shipped


def expected_shipped_trees() -> dict[str, Tree]:
    """name -> the tree nhl builds now for that shipped name."""
    from nhlcli.hierarchy.wordnet_source import build_wordnet_tree

    out = {}
    for set_name in SHIPPED_SETS:
        classes = builtin_set(set_name)
        for levels in SHIPPED_LEVELS:
            out[shipped_tree_name(set_name, levels)] = build_wordnet_tree(
                classes, levels, date=None
            )
    return out


def stale_shipped_trees(expected: dict[str, Tree] | None = None) -> list[str]:
    """Names whose shipped file differs from what nhl builds now (or is missing)."""
    expected = expected_shipped_trees() if expected is None else expected
    stale = []
    for name, tree in expected.items():
        path = shipped("trees", f"{name}.json")
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != tree.to_json():
            stale.append(name)
    return stale


def regenerate() -> list[str]:
    """Rewrite the stale shipped trees; returns their names."""
    expected = expected_shipped_trees()
    stale = stale_shipped_trees(expected)
    for name in stale:
        write_text_atomic(shipped("trees", f"{name}.json"), expected[name].to_json())
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nhlcli.hierarchy.regenerate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    args = parser.parse_args(argv)
    from nhlcli.errors import NhlError

    try:
        if args.check:
            stale = stale_shipped_trees()
            for name in stale:
                print(f"stale: hierarchies/trees/{name}.json")
            print("all shipped trees are current" if not stale else f"{len(stale)} stale")
            return 1 if stale else 0
        changed = regenerate()
    except NhlError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name in changed:
        print(f"wrote hierarchies/trees/{name}.json")
    print(f"{len(changed)} file(s) rewritten, {len(SHIPPED_SETS) * len(SHIPPED_LEVELS)} checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
