"""`nhl build-tree`: a category tree from any registered source (`nhlcli.hierarchy.sources`).

The options every source shares (`--source`, `--classes`, `--levels`, `--groups`, ...) are declared
here once. Every other option is generated, each time the command is built, from the registered
sources' options dataclasses (`setting(...)` fields, `nhlcli.setting_fields`) with the mechanism
of `nhl train` (`setting_options.py`): one option per flag, shown in the help panel of the sources
that take it. A field that is itself a settings dataclass (`InducedOptions.llm: LLMSettings`)
contributes its fields; a field of type `ClassEvidence` is read from a trained model
(`evidence_options.ModelEvidence`: `--model`, `--data`, `--device`). The command looks the source up
by name and passes it the options it was given; an option of another source is an error.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from nhlcli.cli.common import JSON_OPTION, console, err_console, examples, print_json
from nhlcli.cli.evidence_options import ModelEvidence, read_evidence
from nhlcli.cli.setting_options import param_name, parameter
from nhlcli.cli.tree_cmd import stats_table
from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import ClassSet, load_classes
from nhlcli.hierarchy.evidence import ClassEvidence
from nhlcli.hierarchy.levelling import TODAY
from nhlcli.hierarchy.sources import MAX_LEVELS, TreeSource, get_source, sources
from nhlcli.hierarchy.tree_export import tree_summary
from nhlcli.setting_fields import SettingSpec, field_types, given_value, specs_of

EPILOG = examples(
    "nhl build-tree --source wordnet --classes imagenette --levels 3 -o tree.json",
    "nhl build-tree --classes imagenet1k --levels 3 --groups 17,161 -o in1k.json",
    "nhl build-tree -c imagenet1k --groups 17,161 --exact-groups -o in1k-17-161.json",
    "nhl build-tree --source superclass --classes imagenet100 --table imagenet-superclass "
    "-o sc.json",
    "nhl build-tree --source superclass --classes imagenet1k --table breeds/modified "
    "--levels 3 --allow-missing -o breeds.json",
    "nhl build-tree --classes my-classes.txt --levels 2 -o -",
    "nhl build-tree --source llm --classes imagenet100 --levels 3 --llm-model gpt-4o -o gpt.json",
    "OPENAI_API_KEY=local nhl build-tree --source llm --classes imagenette "
    "--llm-model llama3.1 --llm-base-url http://localhost:11434/v1 -o llama.json",
    "nhl build-tree --source hybrid --classes imagenet100 --levels 3 -o hybrid.json",
    "nhl build-tree --source induced --model runs/train/r50 --data imagenette2 -o ind.json",
    "nhl build-tree --source induced --model runs/train/r50 --embedding weights "
    "--linkage average --levels 2 -o ind-w.json",
)

#: field types read on the command line from the settings of another dataclass
INPUTS: dict[type, type] = {ClassEvidence: ModelEvidence}
FieldPath = tuple[str, ...]  # a field of the options, or of a nested settings dataclass


def _shared() -> dict[str, tuple[Any, Any]]:
    """The options of every source (name: (annotation, typer option)), declared once."""
    names = ", ".join(sources())
    return {
        "source": (str, typer.Option(
            "wordnet", "--source", "-s", help=f"Where the groups come from: {names}."
        )),
        "classes": (str | None, typer.Option(
            None, "--classes", "-c",
            help="A built-in class set (nhl classes list) or a class file (a source reading a "
            "trained model: default the model's classes).",
        )),
        "levels": (int | None, typer.Option(
            None, "--levels", "-l", min=1, max=MAX_LEVELS,
            help="Levels of the tree, the classes being the last (default 3; a table: its own "
            "depth).",
        )),
        "groups": (str | None, typer.Option(
            None, "--groups", "-g",
            help="Nodes wanted at each level above the classes, e.g. 17,161 for --levels 3.",
        )),
        "exact_groups": (bool, typer.Option(
            False, "--exact-groups",
            help="Reach the --groups counts exactly (split / merge the source's groups), e.g. the "
            "paper's 17,161.",
        )),
        "no_date": (bool, typer.Option(
            False, "--no-date",
            help="Leave the date out of the provenance (byte-identical rebuilds).",
        )),
        "output": (str, typer.Option(
            ..., "--output", "-o", help="The tree file to write; '-' prints it."
        )),
        "json_out": (bool, JSON_OPTION),
    }  # fmt: skip


@dataclass
class SourceOption:
    """One generated option: a declared setting, and the field it fills in each source taking it."""

    spec: SettingSpec
    fields: dict[str, FieldPath]  # source name -> where it goes in its options (("llm", "model"))

    @property
    def flag(self) -> str:
        return self.spec.long_flag


def _declared(options: type, prefix: FieldPath = ()) -> Iterator[tuple[FieldPath, SettingSpec]]:
    """(field path, spec) of every setting of an options dataclass, nested settings included."""
    specs = {s.name: s for s in specs_of(options)}
    for name, (kind, _) in field_types(options).items():
        if name in specs:
            yield (*prefix, name), specs[name]
        elif kind in INPUTS or (dataclasses.is_dataclass(kind) and specs_of(kind)):
            yield from _declared(INPUTS.get(kind, kind), (*prefix, name))


def source_options() -> dict[str, SourceOption]:
    """The generated options by parameter name, over every registered source."""
    out: dict[str, SourceOption] = {}
    for source in sources().values():
        for path, spec in _declared(source.options):
            name = param_name(spec)
            known = out.setdefault(name, SourceOption(spec, {}))
            if known.spec.kind is not spec.kind:
                raise TypeError(f"{spec.long_flag} is declared with two types ({source.name})")
            known.fields[source.name] = path
    return out


def _signature() -> inspect.Signature:
    shared = _shared()
    taken = frozenset(
        d for _, opt in shared.values() for d in opt.param_decls if d.startswith("--")
    ) | {o.flag for o in source_options().values()}
    every = set(sources())
    params = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=kind)
        for name, (kind, opt) in shared.items()
    ]
    for name, o in source_options().items():
        panel = None if set(o.fields) == every else f"--source {', '.join(o.fields)}"
        params.append(parameter(name, o.spec, panel=panel, taken=taken))
    return inspect.Signature(params)


class BuildTreeCommand:
    """Build a levelled category tree over a class set and write it (format nhl-tree/1)."""

    def __init__(self) -> None:
        self.__annotations__: dict[str, Any] = {}  # typer reads the generated signature

    @property
    def __signature__(self) -> inspect.Signature:
        return _signature()  # the sources registered now

    def __call__(self, **kwargs: Any) -> None:
        build_tree_command(**kwargs)


def register(app: typer.Typer) -> None:
    app.command("build-tree", epilog=EPILOG)(BuildTreeCommand())


def parse_groups(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise NhlError(
            f"--groups takes whole numbers separated by commas, e.g. 17,161 (got {text!r})"
        ) from None


def source_values(
    source: TreeSource, given: dict[str, Any], classes: str | None
) -> tuple[ClassSet, dict[str, Any]]:
    """(the class set, the source's options by field name) from the generated options given."""
    known = source_options()
    given = _old_spellings(source, given, known)
    wrong = [name for name in given if source.name not in known[name].fields]
    if wrong:
        flags = ", ".join(known[n].flag for n in wrong)
        takers = [s for s in sources() if any(s in known[n].fields for n in wrong)]
        raise NhlError(f"{flags} apply to --source {', '.join(takers)}, not {source.name}")
    values: dict[str, Any] = {}
    for name, value in given.items():
        *outer, field = known[name].fields[source.name]
        target = values
        for part in outer:
            target = target.setdefault(part, {})
        target[field] = given_value(known[name].spec, value)
    types_ = field_types(source.options)
    reads = [n for n, (kind, _) in types_.items() if kind in INPUTS]
    class_set = None
    for name in reads:  # a ClassEvidence: read from a model (it may give the classes)
        class_set, values[name] = read_evidence(
            source.name, ModelEvidence(**values.get(name, {})), classes
        )
    for name, value in values.items():
        if isinstance(value, dict):  # a nested settings dataclass (InducedOptions.llm)
            values[name] = types_[name][0](**value)
    if class_set is None:
        if classes is None:
            raise NhlError(
                "--classes is required: a built-in class set (nhl classes list) or a file"
            )
        class_set = load_classes(classes)
    return class_set, values


def _old_spellings(
    source: TreeSource, given: dict[str, Any], known: dict[str, SourceOption]
) -> dict[str, Any]:
    """An old spelling that another option now owns (`--model`, the old `--llm-model`) keeps its
    old meaning for a source that does not take the owner."""
    out = dict(given)
    for name, value in given.items():
        if source.name in known[name].fields:
            continue
        for other, o in known.items():
            if source.name in o.fields and known[name].flag in o.spec.aliases:
                out.pop(name)
                out.setdefault(other, o.spec.kind(value))  # --model PATH -> the model's name
    return out


def build_tree_command(
    source: str,
    classes: str | None,
    levels: int | None,
    groups: str | None,
    exact_groups: bool,
    no_date: bool,
    output: str,
    json_out: bool,
    **options: Any,
) -> None:
    """Build a levelled category tree over a class set and write it (format nhl-tree/1)."""
    import nhlcli as nhl
    from nhlcli.hierarchy.llm import BuildReport
    from nhlcli.hierarchy.sources import SourceContext

    tree_source = get_source(source)  # an unknown source is an error before anything else
    out_path = None if output == "-" else Path(output)
    if out_path is not None and out_path.is_dir():
        raise NhlError(f"{output} is a folder; give a file name for the tree")
    given = {k: v for k, v in options.items() if v is not None}
    class_set, values = source_values(tree_source, given, classes)
    report = BuildReport()  # what a source asking a chat model did
    ctx = SourceContext(date=None if no_date else TODAY, report=report)
    with _progress(f"{source} tree of {len(class_set)} classes") as progress:
        ctx.progress = progress
        tree = nhl.build_tree(source, class_set, levels, groups=parse_groups(groups),
                              context=ctx, exact_groups=exact_groups, **values)  # fmt: skip
    asked = report.model is not None
    if asked:
        err_console.print(
            f"{report.model}: {report.steps} answer(s), {report.cached_steps} from "
            f"the cache, {report.requests} request(s), {report.repairs} repair(s); "
            f"{report.llm_classes} class(es) placed by the model",
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
        if asked:
            extra["llm"] = {
                k: getattr(report, k)
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
def _progress(title: str) -> Iterator[Any]:
    """A transient bar on stderr fed by a source's progress(done, total, what) calls."""
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
