"""`nhl build-tree`: build a category tree from WordNet, a table, or (another module) an LLM."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from nhlcli.cli.common import JSON_OPTION, console, err_console, examples, print_json
from nhlcli.cli.tree_cmd import stats_table
from nhlcli.errors import NhlError
from nhlcli.hierarchy.builders import SOURCES, BuildRequest, build_tree
from nhlcli.hierarchy.classsets import load_classes
from nhlcli.hierarchy.levelling import TODAY
from nhlcli.hierarchy.tree_export import tree_summary


def register(app: typer.Typer) -> None:
    app.command(
        "build-tree",
        epilog=examples(
            "nhl build-tree --source wordnet --classes imagenette --levels 3 -o tree.json",
            "nhl build-tree --classes imagenet1k --levels 3 --groups 17,161 -o in1k.json",
            "nhl build-tree -c imagenet1k --groups 17,161 --exact-groups -o in1k-17-161.json",
            "nhl build-tree --source superclass --classes imagenet100 --table imagenet-superclass "
            "-o sc.json",
            "nhl build-tree --source superclass --classes imagenet1k --table breeds/modified "
            "--levels 3 --allow-missing -o breeds.json",
            "nhl build-tree --classes my-classes.txt --levels 2 -o -",
            "nhl build-tree --source llm --classes imagenet100 --levels 3 --model gpt-4o "
            "-o gpt.json",
            "OPENAI_API_KEY=local nhl build-tree --source llm --classes imagenette "
            "--model llama3.1 --base-url http://localhost:11434/v1 -o llama.json",
            "nhl build-tree --source hybrid --classes imagenet100 --levels 3 -o hybrid.json",
        ),
    )(build_tree_command)


def parse_groups(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise NhlError(
            f"--groups takes whole numbers separated by commas, e.g. 17,161 (got {text!r})"
        ) from None


def build_tree_command(
    source: str = typer.Option(
        "wordnet", "--source", "-s", help=f"Where the groups come from: {', '.join(SOURCES)}."
    ),
    classes: str = typer.Option(
        ..., "--classes", "-c", help="A built-in class set (nhl classes list) or a class file."
    ),
    levels: int | None = typer.Option(
        None,
        "--levels",
        "-l",
        help="Levels of the tree, the classes being the last (default 3; a table: its own depth).",
    ),
    groups: str | None = typer.Option(
        None,
        "--groups",
        "-g",
        help="Nodes wanted at each level above the classes, e.g. 17,161 for --levels 3.",
    ),
    table: str | None = typer.Option(
        None,
        "--table",
        "-t",
        help="For --source superclass: imagenet-superclass (default), a CSV/TSV file "
        "(class,level1,...) or a BREEDS hierarchy folder.",
    ),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Put classes the table lacks in a group of their own."
    ),
    exact_groups: bool = typer.Option(
        False,
        "--exact-groups",
        help="Reach the --groups counts exactly (split / merge the source's groups), e.g. the "
        "paper's 17,161.",
    ),
    no_date: bool = typer.Option(
        False, "--no-date", help="Leave the date out of the provenance (byte-identical rebuilds)."
    ),
    output: str = typer.Option(
        ..., "--output", "-o", help="The tree file to write; '-' prints it."
    ),
    model: str = typer.Option("gpt-4o", "--model", "-m", help="llm/hybrid: the model name."),
    base_url: str | None = typer.Option(
        None,
        "--base-url",
        help="llm/hybrid: an OpenAI-compatible server, e.g. http://localhost:11434/v1 "
        "(default: $OPENAI_BASE_URL, else OpenAI).",
    ),
    api_key_env: str = typer.Option(
        "OPENAI_API_KEY", "--api-key-env", help="llm/hybrid: the environment variable with the key."
    ),
    max_repairs: int = typer.Option(
        3, "--max-repairs", help="llm/hybrid: times an invalid answer is sent back for repair."
    ),
    batch_size: int = typer.Option(
        200, "--batch-size", help="llm/hybrid: classes per request (larger sets are split)."
    ),
    timeout: float = typer.Option(
        120.0, "--timeout", help="llm/hybrid: seconds to wait for one answer (then retried)."
    ),
    cache_dir: Path | None = typer.Option(
        None,
        "--cache-dir",
        help="llm/hybrid: the answer cache (default: $NHL_CACHE_DIR, else the user cache dir).",
    ),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="llm/hybrid: neither read nor write cached answers."
    ),
    refresh: bool = typer.Option(
        False, "--refresh", help="llm/hybrid: ask the model again and replace cached answers."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Build a levelled category tree over a class set and write it (format nhl-tree/1)."""
    if source not in SOURCES:
        raise NhlError(f"unknown --source '{source}' (choose from {', '.join(SOURCES)})")
    out_path = None if output == "-" else Path(output)
    if out_path is not None and out_path.is_dir():
        raise NhlError(f"{output} is a folder; give a file name for the tree")
    request = BuildRequest(
        source=source,
        classes=load_classes(classes),
        levels=levels,
        groups=parse_groups(groups),
        table=table,
        allow_missing=allow_missing,
        date=None if no_date else TODAY,
        options={},  # source-specific options (llm/hybrid) go here
        exact_groups=exact_groups,
    )
    llm_report = None
    if source in ("llm", "hybrid"):
        from nhlcli.hierarchy.llm import BuildReport

        llm_report = BuildReport()
        request.options = {
            "model": model,
            "base_url": base_url,
            "api_key_env": api_key_env,
            "max_repairs": max_repairs,
            "batch_size": batch_size,
            "timeout": timeout,
            "cache_dir": cache_dir,
            "use_cache": not no_cache,
            "refresh": refresh,
            "report": llm_report,
        }
        with _llm_progress(f"{source} tree of {len(request.classes)} classes") as progress:
            request.options["progress"] = progress
            tree = build_tree(request)
        err_console.print(
            f"{model}: {llm_report.steps} answer(s), {llm_report.cached_steps} from the cache, "
            f"{llm_report.requests} request(s), {llm_report.repairs} repair(s); "
            f"{llm_report.llm_classes} class(es) placed by the model",
            soft_wrap=True,
            markup=False,
        )
    else:
        with err_console.status(f"building the {source} tree of {len(request.classes)} classes"):
            tree = build_tree(request)
    for note in request.notes:
        err_console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    if out_path is None:
        sys.stdout.write(tree.to_json())
        sys.stdout.flush()
        return
    try:
        tree.save(out_path)
    except OSError as e:
        raise NhlError(f"cannot write {output}: {e.strerror or e}") from None
    stats = tree_summary(tree)
    if json_out:
        extra: dict[str, Any] = {}
        if llm_report is not None:
            extra["llm"] = {
                k: getattr(llm_report, k)
                for k in (
                    "requests",
                    "steps",
                    "cached_steps",
                    "repairs",
                    "llm_classes",
                    "format_mode",
                )
            }
        print_json(
            {
                "output": output,
                "stats": stats,
                "provenance": tree.provenance,
                "notes": request.notes,
                **extra,
            }
        )
        return
    console.print(
        f"wrote [bold]{output}[/]: {source} tree, {tree.num_classes} classes, {tree.levels} levels"
    )
    console.print(stats_table(tree, stats))


@contextmanager
def _llm_progress(title: str) -> Iterator[Any]:
    """A rich progress bar on stderr fed by the LLM builders' progress(done, total, what)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(
        *columns, console=err_console, transient=True, disable=not err_console.is_terminal
    ) as bar:
        task = bar.add_task(title, total=None)

        def update(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=what or title)

        yield update
