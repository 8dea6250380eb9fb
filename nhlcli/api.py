"""The public Python API of nhl: `import nhlcli as nhl`.

Every `nhl` command calls one of these functions (the CLI only parses, calls and renders), so what a
command does a script can do in one call::

    import nhlcli as nhl

    tree = nhl.load_tree("imagenette-wordnet-L3")          # or nhl.build_tree("wordnet", ...)
    model = nhl.build_model("n3hl", tree, img_size=64)     # random weights
    expert = nhl.cutout(model, ["tench", "church"])        # a real, smaller network
    report = nhl.profile(model, subset=expert.class_ids)   # params and GMACs: full vs expert
    nhl.save_model(expert, "experts/two")

Torch is imported only when a function that needs it runs, so `import nhlcli` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nhlcli.errors import NhlError

if TYPE_CHECKING:
    from nhlcli.evaluation.frontier import Frontier
    from nhlcli.evaluation.runner import EvalReport
    from nhlcli.exporters.exporter import ExportResult
    from nhlcli.hierarchy.classsets import ClassSet
    from nhlcli.hierarchy.evidence import ClassEvidence
    from nhlcli.hierarchy.sources import SourceContext
    from nhlcli.hierarchy.tree import Tree
    from nhlcli.hierarchy.tree_scores import TreeComparison
    from nhlcli.model.network import HierNet
    from nhlcli.model.presets import Preset
    from nhlcli.prediction import PredictReport
    from nhlcli.profiling.bench import BenchReport
    from nhlcli.profiling.report import Profile
    from nhlcli.selection import Selection
    from nhlcli.tour import DemoResult
    from nhlcli.training.config import TrainConfig
    from nhlcli.training.engine import TrainResult
    from nhlcli.training.progress import TrainReporter

__all__ = [
    "bench",
    "build_model",
    "build_tree",
    "collect_evidence",
    "compare_trees",
    "cutout",
    "demo",
    "evaluate",
    "experts",
    "export",
    "load_model",
    "load_tree",
    "predict",
    "prepare",
    "profile",
    "save_model",
    "save_tree",
    "select_classes",
    "train",
]


# ----------------------------------------------------------------------------------------- trees
def load_tree(spec: Tree | str | Path) -> Tree:
    """A tree from an `nhl-tree/1` file, or a shipped tree by name (`imagenette-wordnet-L3`); a
    `Tree` is returned as it is (every function that takes a tree takes any of the three)."""
    from nhlcli.hierarchy.shipped_trees import resolve_tree

    return resolve_tree(spec)


def save_tree(tree: Tree, path: str | Path) -> Path:
    """Write `tree` as an `nhl-tree/1` file (what `load_tree` and every `--tree` read), atomically.

    >>> save_tree(load_tree("imagenette-wordnet-L3"), "/tmp/t.json").name  # doctest: +SKIP
    't.json'
    """
    from nhlcli.hierarchy.tree import Tree

    if not isinstance(tree, Tree):
        raise NhlError(f"save_tree needs a Tree, not {type(tree).__name__}")
    out = Path(path)
    tree.save(out)
    return out


def build_tree(
    source: str = "wordnet",
    classes: str | Path | ClassSet = "imagenette",
    levels: int | None = None,
    *,
    groups: Sequence[int] | None = None,
    notes: list[str] | None = None,
    context: SourceContext | None = None,
    exact_groups: bool = False,
    **options: Any,
) -> Tree:
    """A category tree for `classes` (a built-in set, a class file or a `ClassSet`) from a source.

    `source` names an entry of `nhlcli.hierarchy.sources.SOURCES` (wordnet, superclass, llm,
    hybrid, induced); `options` are that source's typed options by field name (`table=`,
    `allow_missing=` for superclass; `model=`, `base_url=`, ... for llm; `evidence=` (from
    `collect_evidence`), `embedding=`, `linkage=`, `names=` for induced); `notes`, when given,
    receives one-line remarks for the user; `context` sets the provenance date and a progress
    callback; `exact_groups` reaches the `groups` counts exactly (e.g. the paper's 17,161).

    >>> build_tree("superclass", "imagenette", table="imagenet-superclass").num_classes
    10
    """
    from nhlcli.hierarchy.classsets import ClassSet, load_classes
    from nhlcli.hierarchy.sources import build_from_source

    class_set = classes if isinstance(classes, ClassSet) else load_classes(str(classes))
    tree, said = build_from_source(
        source, class_set, levels, groups, options, context, exact_groups=exact_groups
    )
    if notes is not None:
        notes.extend(said)
    return tree


def collect_evidence(
    model: str | Path | HierNet,
    data: str | Path | None = None,
    *,
    classes: Sequence[str] | None = None,
    **options: Any,
) -> ClassEvidence:
    """What a model sees and confuses per class, from one pass over an image folder.

    The mean shared features of each class, the classifier weights (shared-head models), every
    image's class scores and the confusion matrix; without `data` only the weights. The input of
    `build_tree("induced", evidence=...)` and of `compare_trees`. Other options are those of
    `nhlcli.evaluation.embeddings.collect_evidence` (`batch_size`, `device`, `img_size`,
    `max_batches`, `workers`, `allow_extra`).
    """
    from nhlcli.evaluation.embeddings import collect_evidence as collect

    return collect(model, data, classes=classes, **options)


def compare_trees(
    trees: Sequence[Tree | str | Path] | dict[str, Tree | str | Path],
    model: str | Path | HierNet | None = None,
    data: str | Path | None = None,
    *,
    group_score: str = "sum",
    evidence: ClassEvidence | None = None,
    random_control: bool = False,
    seed: int = 0,
    **options: Any,
) -> TreeComparison:
    """Scores of candidate trees for a nested network, per group level (docs/trees.md).

    `trees`: tree files, shipped tree names or `Tree`s (a dict gives them names). Always: nodes,
    singleton groups, balance, agreement with WordNet; with `model` and `data` (or `evidence`):
    the share of the model's confusions inside groups, the silhouette of its class features, and
    the top-1 of the right group from its class scores (`group_score`: "sum" of member softmax
    probabilities, or "max" member score). `ranking` orders the trees by fit (mean confusion
    gain). `random_control` adds a control row: the first tree with its classes shuffled over its
    class slots (same shape, `seed`), what chance gets. Other options go to `collect_evidence`.

    >>> compare_trees(["imagenette-wordnet-L3"]).trees[0].rows[0].nodes
    2
    """
    from nhlcli.hierarchy.tree import Tree
    from nhlcli.hierarchy.tree_scores import compare_scores

    if isinstance(trees, dict):
        named = [(name, load_tree(t)) for name, t in trees.items()]
    else:
        named = [
            (f"tree {i + 1}" if isinstance(t, Tree) else str(t), load_tree(t))
            for i, t in enumerate(trees)
        ]
    if random_control and named:
        from nhlcli.hierarchy.random_tree import random_tree_like

        shape = named[0][0]
        named.append(
            (f"random (shape of {shape}, seed {seed})", random_tree_like(named[0][1], seed))
        )
    if (model is None) != (data is None) and evidence is None:
        raise NhlError("give a model and a data folder together (--model CKPT --data DIR)")
    if evidence is None and model is not None:
        wanted = list(dict.fromkeys(c for _, t in named for c in t.class_ids))
        evidence = collect_evidence(model, data, classes=wanted, **options)
    return compare_scores(named, evidence, group_score)


def select_classes(tree: Tree | str | Path, selection: Selection) -> list[str]:
    """Class ids of `tree` (a `Tree`, tree file or shipped name) that `selection` names: see
    `nhlcli.selection`."""
    from nhlcli.selection import select_classes as select

    return select(load_tree(tree), selection)


# ---------------------------------------------------------------------------------------- models
def build_model(
    arch: str | Preset,
    tree: Tree | str | Path | None = None,
    *,
    classes: str | None = None,
    img_size: int = 224,
    seed: int | None = None,
    device: str | None = None,
) -> HierNet:
    """A randomly initialised network of a preset (`nhl archs`) for a tree.

    `tree` is a `Tree`, a tree file or a shipped tree name; one-level presets may take `classes`
    (a class set or file) instead. `seed` makes the initialisation reproducible.
    """
    import torch

    from nhlcli.model.config import check_img_size
    from nhlcli.model.network import build_model as build
    from nhlcli.model.presets import get_preset

    preset = get_preset(arch) if isinstance(arch, str) else arch
    check_img_size(img_size)
    the_tree = _as_tree(preset, tree, classes)
    if seed is not None:
        if not 0 <= seed < 2**63:
            raise NhlError(f"seed {seed} is out of range (0 to 2**63 - 1)")
        torch.manual_seed(seed)
    return build(preset, the_tree, img_size=img_size, device=device)  # type: ignore[arg-type]


def _as_tree(preset: Preset, tree: Tree | str | Path | None, classes: str | None) -> Tree:
    """The model's tree: a `Tree`, tree file or shipped name, or (one level) a class set."""
    from nhlcli.profiling.targets import tree_for_preset

    return tree_for_preset(preset, tree, classes)


def load_model(path: str | Path, device: str = "cpu") -> HierNet:
    """A checkpoint, expert or training run (its best, else last, checkpoint), in eval mode."""
    from nhlcli.checkpoint import load_model as load

    return load(path, device=device)


def save_model(model: HierNet, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write `model` as a checkpoint directory (config.json + model.safetensors), atomically."""
    from nhlcli.checkpoint import save_model as save

    return save(model, path, extra=extra)


def cutout(
    model: HierNet,
    selection: Selection,
    *,
    order: str = "given",
    attend: str | dict[str, float] | None = None,
    attend_level: int | None = None,
    origin: str | None = None,
    fuse: bool = False,
) -> HierNet:
    """The expert for `selection`: a real, smaller network with the weights sliced out.

    `selection`: class ids or names, tree nodes (every class under them), a class set, a class
    file or a model folder. Its logits equal the full model's for its classes. `attend` sets
    top-down attention (`"tench=1.8"` or `{"tench": 1.8}`) on the expert. `fuse=True` folds the
    batch norms into the convolutions (an inference-only expert, `nhlcli.model.fuse`), checked
    against the unfused expert (NhlError on a mismatch).
    """
    from nhlcli.model.attention import apply_attend
    from nhlcli.model.cutout import cutout as cut

    expert = cut(model, selection, order=order, origin=origin)
    apply_attend(expert, attend, attend_level)
    if fuse:
        from nhlcli.model.fuse import fuse as fuse_model

        expert = fuse_model(expert)
    return expert


def prepare(model: HierNet) -> HierNet:
    """`model` in eval mode, prepared for inference (`HierNet.prepare_inference`): the weights
    its levels derive from their parameters are made once, not on every forward. `train()` ends
    it; after writing weights in place without gradients, prepare again."""
    return model.prepare_inference()


# ----------------------------------------------------------------------------------- measurement
def profile(
    model: HierNet | Preset | str | Path,
    tree: Tree | str | Path | None = None,
    *,
    classes: str | None = None,
    subset: Selection | None = None,
    img_size: int | None = None,
    latency: bool = False,
    batch_size: int = 8,
    runs: int = 20,
    warmup: int = 3,
    device: str = "auto",
    experts: dict[str, Any] | None = None,
    counter: str = "fvcore",
    baseline: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Profile:
    """Parameters and GMACs of a model, its cutout for `subset`, and a baseline.

    `model` is a preset name (then give `tree`, or `classes` for one-level presets), a built
    network, or a saved model, expert or training run folder (a `Path`, or a string that is not
    a preset name; its config.json is read, its weights only for `latency=True`): a network or a
    folder brings its own preset, tree and image size. Nothing is allocated unless `latency=True`,
    which times the models interleaved (`experts`: networks already built, by role
    "full"/"cutout"; `progress(done, total)` after every timed or warm-up run).
    `counter`: fvcore (default), torch, thop or ptflops (`counters.COUNTERS`); `baseline`:
    resnet18/50/152/200 or convnextv2-tiny (default: the preset family's).
    """
    from nhlcli.model.config import check_img_size
    from nhlcli.model.network import HierNet
    from nhlcli.model.presets import get_preset
    from nhlcli.profiling.profile import profile as run_profile

    folder = _saved_model_path(model)
    if folder is not None and (tree is not None or classes is not None):
        raise NhlError(f"{folder} brings its own tree: give the cutout's classes as subset")
    if folder is not None and latency:
        model = load_model(folder)  # the saved network itself is timed
    if isinstance(model, HierNet):
        preset, the_tree, size = model.preset, model.tree, img_size or model.img_size
        built = {"full": model, **(experts or {})}
    elif folder is not None:  # its config only: nothing is allocated
        from nhlcli.checkpoint import read_saved_config

        saved = read_saved_config(folder)
        preset, the_tree, size = saved.preset, saved.tree, img_size or saved.img_size
        built = dict(experts or {})
    else:
        assert not isinstance(model, Path)  # a Path is always a folder
        preset = get_preset(model) if isinstance(model, str) else model
        the_tree = _as_tree(preset, tree, classes)
        size, built = img_size or 224, dict(experts or {})
    check_img_size(size, "--img-size")
    ids = select_classes(the_tree, subset) if subset is not None else None
    return run_profile(
        preset, the_tree, ids, size, latency=latency, batch_size=batch_size, runs=runs,
        warmup=warmup, device=device, models=built or None, progress=progress,
        counter=counter, baseline=baseline,
    )  # fmt: skip


def _saved_model_path(model: object) -> Path | None:
    """`model` as a saved model's folder: a Path, or a string naming no preset that is a path."""
    from nhlcli.model.presets import PRESETS

    if isinstance(model, Path):
        return model
    is_path = isinstance(model, str) and ("/" in model or Path(model).exists())
    return Path(model) if is_path and model not in PRESETS else None  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- workflows
def demo(
    output: str | Path = "nhl-demo",
    *,
    arch: str = "n3hl",
    expert_classes: int = 5,
    img_size: int = 224,
) -> DemoResult:
    """The papers' example, then a small network end to end (`nhl demo`; `nhlcli/tour.py`).

    1. `arch` for the 1000 ImageNet classes (shipped tree `imagenet1k-wordnet-L3`) and its "meow"
       expert, the 5 domestic cats: counted at 224 px with nothing allocated (`.headline`;
       n3hl: -89.6 % parameters, -73.8 % GMACs).
    2. `arch` for Imagenette's 10 classes (`imagenette-wordnet-L3`), random weights, saved to
       `output/<arch>-imagenette`, and an expert of `expert_classes` classes that share one group
       of the tree, cut out and saved to `output/<arch>-expert-<n>` (`.small`, `.cutout`).

    Returns a `DemoResult`; `.to_dict()` is the JSON of `nhl demo --json`.
    """
    from nhlcli.tour import run_demo

    return run_demo(output, arch, expert_classes, img_size)


def train(
    config: TrainConfig | dict[str, Any] | None = None,
    *,
    config_file: str | Path | None = None,
    resume: str | Path | None = None,
    devices: int | None = None,
    reporter: TrainReporter | None = None,
    verbose: bool = True,
    json_out: bool = False,
    **settings: Any,
) -> TrainResult | None:
    """Train (or resume) a run: settings as keywords, a dict of them by name, or a `TrainConfig`.

    `nhl.train(arch="n3hl", tree="imagenette-wordnet-L3", data="imagenette2", epochs=8)`; the
    keys are those of docs/training.md (an unknown key is an NhlError naming the close one);
    `tree` may be a `Tree`, which the run saves as RUN/tree.json. Settings come from defaults <
    `config_file` (YAML) < `config` < keywords; `resume` continues a run (its directory or its
    last/ checkpoint). Progress goes to stdout as on the command line (bars on a terminal, plain
    lines in a file or a notebook); `verbose=False` prints nothing, `reporter` replaces it.
    `devices > 1` runs torchrun with DDP on this machine and returns None (the processes print
    their own results).

    >>> train(arch="resnet50", data="imagenette2", epochs=8)  # doctest: +SKIP
    """
    from nhlcli.hierarchy.tree import Tree
    from nhlcli.training.config import TrainConfig, config_from_sources, resolve_resume_dir
    from nhlcli.training.distributed import check_devices, launch_training
    from nhlcli.training.engine import train as run_training

    check_devices(devices)
    given = config.given_settings() if isinstance(config, TrainConfig) else dict(config or {})
    options = {**given, **settings}
    tree = options.get("tree")
    if isinstance(tree, Tree):
        options["tree"] = None  # the run gets the object; args.yaml records RUN/tree.json
    else:
        tree = None
    cfg = config_from_sources(config_file, options, resume)
    resume_dir = resolve_resume_dir(resume) if resume is not None else None
    if devices is not None and devices > 1:
        if tree is not None:
            raise NhlError("devices > 1 needs a tree file: save the tree (nhl.save_tree) first")
        rc = launch_training(cfg.given_settings(), devices, resume_dir, json_out)
        if rc != 0:
            raise SystemExit(rc)
        return None
    if reporter is None:
        from rich.console import Console

        from nhlcli.training.progress import RichReporter, SilentReporter

        reporter = RichReporter(Console(highlight=False)) if verbose else SilentReporter()
    return run_training(cfg, resume_dir=resume_dir, reporter=reporter, tree=tree)


def evaluate(
    model: str | Path | HierNet,
    data: str | Path,
    *,
    classes: Selection | None = None,
    attend: str | None = None,
    **options: Any,
) -> EvalReport:
    """Top-1 and per-class accuracy of a model (a folder, or a loaded network) on an image folder.

    `classes` evaluates on a subset with the softmax restricted to it (paper eq. 3); `attend` sets
    top-down attention; other options are those of `nhlcli.evaluation.runner.evaluate`
    (`oracle_scales`, `batch_size`, `device`, `max_batches`, ...).
    """
    from nhlcli.evaluation.runner import evaluate as run_eval
    from nhlcli.model.network import HierNet

    if isinstance(model, HierNet):
        return run_eval("<model>", data, classes, attend, model=model, **options)
    return run_eval(model, data, classes, attend, **options)


def experts(
    model: str | Path | HierNet,
    data: str | Path,
    *,
    level: int = 1,
    sets: Sequence[str | Path] = (),
    latency: bool = False,
    project: str | Path | None = None,
    name: str = "exp",
    exist_ok: bool = False,
    **options: Any,
) -> Frontier:
    """The expert frontier: every node of tree `level`, every class set in `sets` and the full
    model, each with params/GMACs (Δ % vs full), closed-set top-1 on its own classes, FPR at 95 %
    TPR and AUROC of in- vs out-of-subset images by max softmax, and latency if `latency`
    (docs/experts.md). One pass of the full model serves every candidate. With `project`, writes
    `project/NAME/` (experts.csv, report.json, frontier.png). Other options go to
    `nhlcli.evaluation.frontier.expert_frontier` (batch_size, device, max_batches, ...). (Not
    `nhl.experts`: that name is the `nhlcli.experts` package, which would shadow a function.)
    """
    from nhlcli.evaluation.frontier import expert_frontier as run_frontier
    from nhlcli.evaluation.frontier import write_frontier_dir

    result = run_frontier(model, data, level=level, sets=sets, latency=latency, **options)
    if project is not None:
        write_frontier_dir(result, project, name, exist_ok)
    return result


expert_frontier = experts  # its first name, kept so that code written against it still runs


def predict(
    model: str | Path,
    images: Sequence[str | Path] | str | Path,
    *,
    top: int = 5,
    batch_size: int = 16,
    attend: str | None = None,
    img_size: int | None = None,
    device: str = "auto",
    progress: Any = None,
    trust_torchscript: bool = False,
    decode: str = "argmax",
    tree: Tree | str | Path | None = None,
    precision: str = "fp32",
) -> PredictReport:
    """The top classes of image files and/or folders for a model folder, an .onnx or a .pt file.

    A TorchScript .pt file runs code stored in it when it loads: it is refused unless
    `trust_torchscript` (model folders and ONNX files never run code from the file).
    `decode="crm"` ranks the classes by least expected tree distance (conditional risk
    minimisation) under `tree` (default: a model folder's own tree).
    `precision="bf16"` runs a model folder under bf16 autocast on CPUs with bf16 instructions
    (`nhlcli.precision`)."""
    from nhlcli.prediction import list_images, open_predictor, predict_images

    inputs = [images] if isinstance(images, str | Path) else list(images)
    predictor = open_predictor(
        model,
        attend=attend,
        img_size=img_size,
        device=device,
        trust_torchscript=trust_torchscript,
        precision=precision,
    )
    distances = None
    if decode not in ("argmax", "crm"):
        raise NhlError(f"--decode '{decode}' is not one of argmax, crm")
    if decode == "crm":
        from nhlcli.evaluation.hierarchical_distance import lca_distances

        own = getattr(getattr(predictor, "model", None), "tree", None)
        yardstick = load_tree(tree) if tree is not None else own
        if yardstick is None:
            raise NhlError("--decode crm on an exported file needs --tree (a tree of its classes)")
        missing = [c for c in predictor.class_ids if not yardstick.is_class(c)]
        if missing:
            raise NhlError(f"--tree: {len(missing)} class(es) of the model are not in it")
        distances = lca_distances(yardstick, predictor.class_ids).numpy().astype("float64")
    files = list_images(inputs, predictor.img_size)
    return predict_images(
        predictor, files, top=top, batch_size=batch_size, progress=progress, distances=distances
    )


def bench(targets: Sequence[str | Path] | str | Path, **options: Any) -> BenchReport:
    """Images per second, ms per batch and GMAC/s of models, experts, .onnx files (int8 too) or
    presets, timed interleaved against a baseline (`nhlcli.profiling.bench.bench`: `batch_sizes`,
    `precisions`, `runtimes`, `baseline`, `img_size`, `runs`, `warmup`, `progress`)."""
    from nhlcli.profiling.bench import bench as run_bench

    given = [targets] if isinstance(targets, str | Path) else list(targets)
    return run_bench([str(t) for t in given], **options)


def export(
    model: str | Path | HierNet,
    format: str | None = None,
    output: str | Path | None = None,
    *,
    attend: str | None = None,
    attend_level: int | None = None,
    quantize: str | None = None,
    calibration: str | Path | None = None,
    calibration_images: int | None = None,
    **options: Any,
) -> ExportResult:
    """Export a model (folder or network) to ONNX or TorchScript, checked before it is written.

    The model is always fused first (batch norms folded into the convolutions, checked against
    the unfused model: `nhlcli.model.fuse`); the export is then checked against the fused model.
    The result's `params` counts the fused file, `checkpoint_params` the model as loaded, and
    `fused` says the difference.

    `format` defaults to what `output`'s suffix says (.onnx; .pt, .ts: torchscript), else onnx;
    a format the suffix contradicts is an NhlError. `output` defaults to the checkpoint folder's
    name with .onnx / .pt beside it: `experts/cats.onnx`, and for a training run, whose best/
    (else last/) is exported, `runs/train/exp/best.onnx` inside the run. The result's `source`
    names the checkpoint (and its training epoch). Other options are those of
    `nhlcli.exporters.export_model` (`img_size`, `dynamic_batch`, `batch_size`, `opset`,
    `exporter`, `min_agreement`).

    `quantize="int8"` (ONNX only) writes an int8 file instead, calibrated on `calibration_images`
    (default 300) class-balanced images of the folder `calibration` and checked against fp32 on
    them; the check is in the file's metadata and in the result (`nhlcli.exporters.quantize`).
    """
    import dataclasses

    from nhlcli.checkpoint_dirs import resolve_checkpoint
    from nhlcli.exporters import default_output, export_format, export_model, source_info
    from nhlcli.exporters.quantize import (
        DEFAULT_CALIBRATION_IMAGES,
        calibration_batch,
        check_quantize,
    )
    from nhlcli.model.attention import apply_attend
    from nhlcli.model.fuse import fuse as fuse_model
    from nhlcli.model.network import HierNet
    from nhlcli.profiling.compose import compose_profile

    fmt = export_format(format, output)
    source = None
    if isinstance(model, HierNet):
        net = model
        if output is None:
            raise NhlError("give an output file to export a model that is not a folder")
    else:
        folder = resolve_checkpoint(model)
        source = source_info(folder, model)
        net = load_model(folder)
    apply_attend(net, attend, attend_level)
    check_quantize(quantize, fmt, calibration)
    out = Path(output) if output is not None else default_output(folder, fmt)
    if quantize is not None and output is None:  # experts/cats-int8.onnx beside experts/cats.onnx
        out = out.with_name(f"{out.stem}-{quantize}{out.suffix}")
    size = int(options.get("img_size") or net.img_size)
    gmacs = compose_profile(net.preset, net.nodes_per_level(), net.num_classes, size).gmacs
    images = None
    if quantize is not None and calibration is not None:
        n = DEFAULT_CALIBRATION_IMAGES if calibration_images is None else calibration_images
        images = calibration_batch(net.tree, calibration, n, size)
    elif calibration_images is not None:
        raise NhlError("--calibration-images needs --quantize int8")
    result = export_model(
        fuse_model(net), out, fmt, gmacs=gmacs, quantize=quantize, calibration=images, **options
    )
    return dataclasses.replace(result, source=source, checkpoint_params=net.num_params())
