"""`nhl build-tree`: a category tree from any registered source (`nhlcli.hierarchy.sources`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from nhlcli.cli import llm_options as llm
from nhlcli.cli.common import JSON_OPTION, console, err_console, examples, print_json
from nhlcli.cli.tree_cmd import stats_table
from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import load_classes
from nhlcli.hierarchy.levelling import TODAY
from nhlcli.hierarchy.sources import MAX_LEVELS, SOURCES, get_source
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
            "nhl build-tree --source llm --classes imagenet100 --levels 3 --llm-model gpt-4o "
            "-o gpt.json",
            "OPENAI_API_KEY=local nhl build-tree --source llm --classes imagenette "
            "--llm-model llama3.1 --llm-base-url http://localhost:11434/v1 -o llama.json",
            "nhl build-tree --source hybrid --classes imagenet100 --levels 3 -o hybrid.json",
            "nhl build-tree --source induced --model runs/train/r50 --data imagenette2 -o ind.json",
            "nhl build-tree --source induced --model runs/train/r50 --embedding weights "
            "--linkage average --levels 2 -o ind-w.json",
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
    classes: str | None = typer.Option(
        None,
        "--classes",
        "-c",
        help="A built-in class set (nhl classes list) or a class file (--source induced: "
        "default the model's classes).",
    ),
    levels: int | None = typer.Option(
        None,
        "--levels",
        "-l",
        min=1,
        max=MAX_LEVELS,
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
        help="For --source superclass: imagenet-superclass (default), a CSV/TSV file "
        "(class,parent,grandparent,...: tabby,cat,pet puts pet on top) or a BREEDS folder.",
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
    model: Path | None = typer.Option(
        None, "--model", help="--source induced: the trained model (checkpoint or run directory)."
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="--source induced: folder of class folders (DIR/val if present) for the features "
        "and confusions.",
    ),
    embedding: str | None = typer.Option(
        None,
        "--embedding",
        help="--source induced: features (default with --data), weights (a shared classifier; "
        "default without --data) or confusion.",
    ),
    linkage: str | None = typer.Option(
        None, "--linkage", help="--source induced: ward (default) or average."
    ),
    names: str | None = typer.Option(
        None,
        "--names",
        help="--source induced: auto (WordNet, else central members; default), wordnet, central "
        "or llm (the --llm-* options).",
    ),
    device: str | None = typer.Option(
        None, "--device", help="--source induced: cpu, cuda, cuda:N (default: cuda if available)."
    ),
    llm_model: str = llm.MODEL_NO_ALIAS,
    llm_base_url: str | None = llm.BASE_URL,
    llm_api_key_env: str = llm.API_KEY_ENV,
    llm_max_repairs: int = llm.MAX_REPAIRS,
    llm_batch_size: int = typer.Option(
        200,
        "--llm-batch-size",
        "--batch-size",
        help="llm/hybrid: classes per request; larger sets are split (--batch-size: old spelling).",
    ),
    llm_timeout: float = llm.TIMEOUT,
    llm_deadline: float = llm.DEADLINE,
    llm_cache_dir: Path | None = llm.CACHE_DIR,
    llm_no_cache: bool = llm.NO_CACHE,
    llm_refresh: bool = llm.REFRESH,
    json_out: bool = JSON_OPTION,
) -> None:
    """Build a levelled category tree over a class set and write it (format nhl-tree/1)."""
    import nhlcli as nhl
    from nhlcli.hierarchy.sources import SourceContext

    get_source(source)  # an unknown source is an error before anything else
    out_path = None if output == "-" else Path(output)
    if out_path is not None and out_path.is_dir():
        raise NhlError(f"{output} is a folder; give a file name for the tree")
    induced = {"model": model, "data": data, "embedding": embedding, "linkage": linkage,
               "names": names, "device": device}  # fmt: skip
    if source in ("llm", "hybrid") and model is not None:  # --model: the old --llm-model
        llm_model, induced["model"] = str(model), None
    given = [f"--{k}" for k, v in induced.items() if v is not None]
    if source != "induced" and given:
        raise NhlError(f"{', '.join(given)} apply to --source induced, not {source}")
    if source != "induced" and classes is None:
        raise NhlError("--classes is required: a built-in class set (nhl classes list) or a file")
    if source != "superclass" and (table is not None or allow_missing):
        raise NhlError(f"--table and --allow-missing apply to --source superclass, not {source}")
    options: dict[str, Any] = {}
    if source == "induced":
        from nhlcli.cli.evidence_options import induced_options

        class_set, options = induced_options(
            classes, model, data, embedding, linkage, names, device,
            llm.llm_values(locals()),
        )  # fmt: skip
    else:
        class_set = load_classes(str(classes))
    if source == "superclass":
        options = {"table": table, "allow_missing": allow_missing}
    if source in ("llm", "hybrid"):
        options = {
            **llm.llm_values(locals()),
            "batch_size": llm_batch_size,
        }  # fmt: skip
    ctx = SourceContext(date=None if no_date else TODAY)
    asks_llm = source in ("llm", "hybrid") or (
        source == "induced" and options.get("names") == "llm"
    )
    llm_report = None
    title = f"{source} tree of {len(class_set)} classes"
    if asks_llm:
        from nhlcli.hierarchy.llm import BuildReport

        llm_report = ctx.report = BuildReport()
    with _llm_progress(title) if asks_llm else _status(f"building the {title}") as progress:
        ctx.progress = progress
        tree = nhl.build_tree(source, class_set, levels, groups=parse_groups(groups),
                              context=ctx, exact_groups=exact_groups, **options)  # fmt: skip
    if llm_report is not None:
        err_console.print(
            f"{llm_model}: {llm_report.steps} answer(s), {llm_report.cached_steps} from the cache, "
            f"{llm_report.requests} request(s), {llm_report.repairs} repair(s); "
            f"{llm_report.llm_classes} class(es) placed by the model",
            soft_wrap=True,
            markup=False,
        )
    for note in ctx.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
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
                for k in ("requests", "steps", "cached_steps", "repairs", "llm_classes",
                          "format_mode")
            }  # fmt: skip
        print_json(
            {"output": output, "stats": stats, "provenance": tree.provenance,
             "notes": ctx.notes, **extra}
        )  # fmt: skip
        return
    console.print(
        f"wrote {output}: {source} tree, {tree.num_classes} classes, {tree.levels} levels",
        markup=False,
    )
    console.print(stats_table(tree, stats))


@contextmanager
def _status(title: str) -> Iterator[None]:
    """A spinner on stderr for a build that reports no progress (no callback: None)."""
    with err_console.status(title):
        yield None


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
