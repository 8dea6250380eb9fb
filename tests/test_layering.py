"""The layering rule of docs/ARCHITECTURE.md, checked on every import of every module.

The layer table at the top of docs/ARCHITECTURE.md is the source: each row names a layer
("0. basics", "3a. shared services", ...) and the files and packages in it. A module may import
modules of its own layer and of the layers above it (earlier rows); a row whose "depends on" says
"never each other" forbids imports between its entries (its packages or modules), except the
arrows it lists as ``(except `a` → `b`: reason)``. Imports inside functions and under
TYPE_CHECKING count like the others; one that must cross anyway carries ``# layering: <reason>``
on its line. Every module must belong to a row, and every path a row names must exist.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
ALLOW = re.compile(r"#\s*layering:\s*(\S.*)?$")


@dataclass(frozen=True)
class Layer:
    rank: tuple[int, str]  # "3a" -> (3, "a"): rows in order
    name: str
    paths: tuple[str, ...]  # "nhlcli/errors.py", "nhlcli/hierarchy/", ...
    apart: bool = False  # entries never import each other
    allowed: frozenset[tuple[str, str]] = field(default_factory=frozenset)


def parse_layers(markdown: str) -> list[Layer]:
    """The rows of the first table whose first column is a layer ("2. model")."""
    layers = []
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"(\d+)([a-z]?)\. (.+)", cells[0]) if len(cells) >= 4 else None
        if m is None:
            if layers and not line.startswith("|"):
                break  # the end of the layer table
            continue
        depends = cells[3]
        allowed = frozenset(
            (a, b) for a, b in re.findall(r"`([^`]+)` → `([^`]+)`", depends.split("(except")[-1])
        )
        layers.append(
            Layer(
                rank=(int(m.group(1)), m.group(2)),
                name=f"{m.group(1)}{m.group(2)}. {m.group(3)}",
                paths=tuple(re.findall(r"`(nhlcli/[^`]*)`", cells[1])),
                apart="never each other" in depends,
                allowed=allowed if "(except" in depends else frozenset(),
            )
        )
    return layers


def entry_of(path: str, layers: list[Layer]) -> tuple[Layer, str] | None:
    """The layer and table entry (the longest path naming it) a file or package belongs to."""
    best: tuple[Layer, str] | None = None
    for layer in layers:
        for p in layer.paths:
            hit = path == p or (p.endswith("/") and path.startswith(p))
            if hit and (best is None or len(p) > len(best[1])):
                best = (layer, p)
    return best


def module_path(name: str, files: Mapping[str, str]) -> str | None:
    """The file of module `name` among `files` (``a.b`` -> a/b.py or a/b/__init__.py)."""
    base = name.replace(".", "/")
    for candidate in (f"{base}.py", f"{base}/__init__.py"):
        if candidate in files:
            return candidate
    return None


def imports(path: str, source: str, files: Mapping[str, str]) -> Iterator[tuple[str, int, str]]:
    """(imported file, line, the line's text) for every nhlcli import in a module, wherever it
    stands (top level, functions, TYPE_CHECKING); ``from a import b`` means a.b when b is a
    module."""
    package = path.rsplit("/", 1)[0].replace("/", ".")
    if path.endswith("__init__.py"):
        package = path[: -len("/__init__.py")].replace("/", ".")
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names = [f"{module}.{a.name}" for a in node.names]
            names = [n if module_path(n, files) else module for n in names]
        for name in names:
            target = module_path(name, files) if name.split(".")[0] == "nhlcli" else None
            if target is not None and target != path:
                yield target, node.lineno, lines[node.lineno - 1]


def violations(files: Mapping[str, str], layers: list[Layer]) -> list[str]:
    """Every import against the layer table (module doc), as readable lines."""
    out = []
    for layer in layers:
        for p in layer.paths:
            if not (any(f.startswith(p) for f in files) if p.endswith("/") else p in files):
                out.append(f"layer {layer.name} names {p}, which does not exist")
    for path, source in sorted(files.items()):
        own = entry_of(path, layers)
        if own is None:
            out.append(f"{path} is in no layer of the table")
            continue
        for target, line, text in imports(path, source, files):
            other = entry_of(target, layers)
            if other is None:
                continue  # reported as a module in no layer
            allow = ALLOW.search(text)
            if allow is not None:
                if allow.group(1) is None:
                    out.append(f"{path}:{line}: '# layering:' needs a reason")
                continue
            (layer, entry), (to_layer, to_entry) = own, other
            if to_layer.rank > layer.rank:
                out.append(
                    f"{path}:{line} (layer {layer.name}) imports {target} "
                    f"(layer {to_layer.name}, below it)"
                )
            elif (
                to_layer is layer
                and layer.apart
                and to_entry != entry
                and (entry, to_entry) not in layer.allowed
            ):
                out.append(
                    f"{path}:{line} imports {target}: {entry} and {to_entry} are siblings in "
                    f"layer {layer.name}, which never import each other"
                )
    return out


def project_files() -> dict[str, str]:
    return {
        p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted((ROOT / "nhlcli").rglob("*.py"))
    }


# ----------------------------------------------------------------------------------- the project


def test_the_docs_table_is_read() -> None:
    layers = parse_layers(DOC.read_text(encoding="utf-8"))
    names = [layer.name.split(". ")[1] for layer in layers]
    assert names == ["basics", "hierarchy", "model", "shared services", "workflows", "api", "cli"]
    workflows = layers[4]
    assert workflows.apart and ("nhlcli/prediction.py", "nhlcli/exporters/") in workflows.allowed
    assert [layer.rank for layer in layers] == sorted(layer.rank for layer in layers)


def test_every_import_follows_the_layers() -> None:
    layers = parse_layers(DOC.read_text(encoding="utf-8"))
    problems = violations(project_files(), layers)
    assert problems == [], "\n".join(problems)


# ----------------------------------------------------------------- the checker, on made-up modules

TABLE = """
| layer | package | job | depends on |
|---|---|---|---|
| 0. basics | `nhlcli/errors.py` | errors | stdlib |
| 1. core | `nhlcli/core/` | the core | layer 0 |
| 2a. shared | `nhlcli/shared.py` | shared | layers 0–1 |
| 2b. workflows | `nhlcli/train/`, `nhlcli/evaluate/`, `nhlcli/predict.py`, `nhlcli/export/` | work | layers 0–2a, never each other (except `nhlcli/predict.py` → `nhlcli/export/`: reads its files) |
| 3. cli | `nhlcli/cli.py` | commands | everything |

Text after the table.
"""  # noqa: E501

CLEAN = {
    "nhlcli/errors.py": "class NhlError(Exception): ...\n",
    "nhlcli/core/__init__.py": "",
    "nhlcli/core/tree.py": "from nhlcli.errors import NhlError\n",
    "nhlcli/core/net.py": "from . import tree\nfrom .tree import NhlError\n",
    "nhlcli/shared.py": "import nhlcli.core.tree\n",
    "nhlcli/train/__init__.py": "",
    "nhlcli/train/loop.py": "from nhlcli.shared import x\nfrom nhlcli.train import loop\n",
    "nhlcli/evaluate/__init__.py": "from nhlcli.core import net\n",
    "nhlcli/export/__init__.py": "",
    "nhlcli/export/meta.py": "",
    "nhlcli/predict.py": "from nhlcli.export.meta import read\n",
    "nhlcli/cli.py": "from nhlcli import predict, train\nimport nhlcli.evaluate\n",
}


def check(**changes: str) -> list[str]:
    files = {**CLEAN, **{k.replace("__", "/") + ".py": v for k, v in changes.items()}}
    return violations(files, parse_layers(TABLE))


def test_made_up_modules_that_follow_the_rule_pass() -> None:
    layers = parse_layers(TABLE)
    assert [layer.rank for layer in layers] == [(0, ""), (1, ""), (2, "a"), (2, "b"), (3, "")]
    assert layers[3].allowed == {("nhlcli/predict.py", "nhlcli/export/")}
    assert check() == []


def test_an_import_from_a_layer_below_fails() -> None:
    (problem,) = check(nhlcli__core__tree="from nhlcli.train.loop import run\n")
    assert "nhlcli/core/tree.py:1 (layer 1. core) imports nhlcli/train/loop.py" in problem
    assert "below it" in problem
    # relative imports resolve like absolute ones
    (problem,) = check(nhlcli__shared="from .train import loop\n")
    assert "imports nhlcli/train/loop.py" in problem


def test_an_import_inside_a_function_counts() -> None:
    lazy = "def f():\n    from nhlcli.cli import main\n    return main\n"
    (problem,) = check(nhlcli__core__net=lazy)
    assert "nhlcli/core/net.py:2" in problem and "nhlcli/cli.py" in problem
    typing_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import nhlcli.shared\n"
    assert len(check(nhlcli__core__net=typing_only)) == 1


def test_a_marked_lazy_import_is_allowed_only_with_a_reason() -> None:
    reason = "def f():\n    from nhlcli.cli import main  # layering: plugin hook\n"
    assert check(nhlcli__core__net=reason) == []
    bare = "def f():\n    from nhlcli.cli import main  # layering:\n"
    (problem,) = check(nhlcli__core__net=bare)
    assert "needs a reason" in problem


def test_siblings_in_a_never_each_other_layer_fail_unless_listed() -> None:
    (problem,) = check(nhlcli__train__loop="from nhlcli.evaluate import score\n")
    assert "nhlcli/train/ and nhlcli/evaluate/ are siblings in layer 2b. workflows" in problem
    assert check(nhlcli__predict="from nhlcli.export import meta\n") == []  # the listed arrow
    (problem,) = check(nhlcli__evaluate__metrics="from nhlcli.predict import top\n")
    assert "nhlcli/evaluate/ and nhlcli/predict.py are siblings" in problem
    # the same arrow backwards is not listed
    assert len(check(nhlcli__export__meta="import nhlcli.predict\n")) == 1


def test_modules_outside_the_table_and_missing_paths_fail() -> None:
    (problem,) = check(nhlcli__extra="")
    assert problem == "nhlcli/extra.py is in no layer of the table"
    files = {k: v for k, v in CLEAN.items() if k != "nhlcli/shared.py"}
    files["nhlcli/train/loop.py"] = ""
    assert violations(files, parse_layers(TABLE)) == [
        "layer 2a. shared names nhlcli/shared.py, which does not exist"
    ]
