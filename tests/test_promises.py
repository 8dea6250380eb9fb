"""What nhl promises (docs/promises.md): outputs never overwrite inputs, loading runs no code unless
trusted, and every bad input is one `error:` line with exit code 2 and nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from imagenette_sample import small_tree
from model_helpers import tiny_preset
from PIL import Image

from nhlcli.checkpoint import save_model
from nhlcli.exporters import export_model
from nhlcli.model.network import build_model

KEEP = ["n01440764", "n03028079"]  # tench, church


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder, its ONNX export, a class file, a tree file and a folder of images."""
    root = tmp_path_factory.mktemp("promises")
    torch.manual_seed(0)
    model = build_model(tiny_preset(3), small_tree(), img_size=32).eval()
    save_model(model, root / "M")
    export_model(model, root / "m.onnx", "onnx", dynamic_batch=True)
    (root / "f.txt").write_text("tench\nchurch\n", encoding="utf-8")
    small_tree(KEEP).save(root / "t.json")
    photos = root / "photos"
    photos.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (40 * i, 90, 200)).save(photos / f"p{i}.png")
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root (symlinks as their target) and a hash of its bytes."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath, name)
            out[str(p.relative_to(root))] = (
                "-> " + os.readlink(p)
                if p.is_symlink()
                else hashlib.sha256(p.read_bytes()).hexdigest()
            )
    return out


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, err)


OVERWRITES = {
    "export onto the weights": ["export", "M", "--format", "onnx", "-o", "M/model.safetensors"],
    "export onto the config": ["export", "M", "--format", "onnx", "-o", "M/config.json"],
    "export into the model folder": ["export", "M", "--format", "onnx", "-o", "M/new.onnx"],
    "export onto the input through a symlink": ["export", "M", "-f", "onnx", "-o", "link.json"],
    "export onto a hard link of the input": ["export", "M", "-f", "onnx", "-o", "hard.json"],
    "cutout onto its model": ["cutout", "M", "-c", "tench,church", "-o", "M"],
    "cutout into its model": ["cutout", "M", "-c", "tench,church", "-o", "M/expert"],
    "cutout over the folder holding its model": ["cutout", "M", "-c", "tench", "-o", "."],
    "cutout picture onto its model": ["cutout", "M", "-c", "tench", "--picture", "M/config.json"],
    "predict csv onto its model": ["predict", "m.onnx", "photos", "--csv", "m.onnx"],
    "predict csv onto an image": ["predict", "m.onnx", "photos", "--csv", "photos/p0.png"],
    "predict csv into the image folder": ["predict", "m.onnx", "photos", "--csv", "photos/p.csv"],
    "build-tree onto its class file": ["build-tree", "--classes", "f.txt", "--levels", "2", "-o",
                                       "f.txt"],
    "tree export onto the tree": ["tree", "export", "t.json", "--format", "json", "-o", "t.json"],
    "tree show picture onto a link to the tree": ["tree", "show", "t.json", "-o", "t.svg"],
    "export into the model folder by ..": ["export", "M", "-f", "onnx", "-o", "photos/../M/x"],
}  # fmt: skip


@pytest.mark.parametrize("case", list(OVERWRITES))
def test_outputs_never_overwrite_or_enter_their_inputs(
    case: str,
    work: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "w"
    shutil.copytree(work, root, symlinks=True)
    os.symlink("M/config.json", root / "link.json")
    os.symlink("t.json", root / "t.svg")
    os.link(root / "M" / "config.json", root / "hard.json")
    monkeypatch.chdir(root)
    before = snapshot(root)
    code, _, err = run_cli(OVERWRITES[case], capsys)
    assert_one_line_error(code, err, "refusing to write")
    assert snapshot(root) == before  # nothing changed, nothing added (no temp files either)


def test_untrusted_torchscript_is_refused_before_any_of_it_runs(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from evil_torchscript import write_evil_module

    marker = tmp_path / "ran.txt"
    evil = write_evil_module(tmp_path / "evil.pt", marker)
    assert not marker.exists()
    code, out, err = run_cli(["predict", evil, work / "photos"], capsys)
    assert_one_line_error(code, err, "--trust-torchscript", "runs code")
    assert out == "" and not marker.exists()
    code, _, err = run_cli(["predict", evil, work / "photos", "--json"], capsys)
    assert code == 2 and not marker.exists()
    # the check is the oracle: trusting the file does run its code
    code, _, err = run_cli(["predict", evil, work / "photos", "--trust-torchscript"], capsys)
    assert marker.exists()
    assert_one_line_error(code, err, "not exported by nhl")


def test_trusted_torchscript_export_predicts(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ts = tmp_path / "m.pt"
    code, _, err = run_cli(["export", work / "M", "--format", "torchscript", "-o", ts], capsys)
    assert code == 0, err
    code, _, err = run_cli(["predict", ts, work / "photos", "--json"], capsys)
    assert_one_line_error(code, err, "--trust-torchscript")
    code, out, err = run_cli(
        ["predict", ts, work / "photos", "--json", "--trust-torchscript"], capsys
    )
    assert code == 0 and '"images": 3' in out, err


MARKUP = ["[/x]", "[/]", "[bold]", "[red]x[/red]", "[link=x]"]


@pytest.mark.parametrize("text", MARKUP)
def test_markup_in_user_text_is_printed_literally(
    text: str, work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (["classes", "show", f"{text}-nonexist.txt"], f"{text}-nonexist.txt"),
        (["cutout", work / "M", "-c", "tench", "--attend", f"{text}=2"], text),
        (["cutout", work / "M", "-c", f"{text}"], text),
        (["tree", "show", f"{text}.json"], f"{text}.json"),
        (["predict", work / "M", f"{text}.jpg"], f"{text}.jpg"),
        (["train", "--arch", "n3hl", "--data", f"{text}"], ""),
    ]
    for args, shown in cases:
        code, _, err = run_cli(args, capsys)
        assert_one_line_error(code, err, shown)
    # a class file name with markup, printed in a table, keeps its brackets
    if "/" in text:
        return
    f = tmp_path / f"{text}.txt"
    f.write_text("tench\n", encoding="utf-8")
    code, out, err = run_cli(["classes", "show", f], capsys)
    assert code == 0, err
    assert text in out.replace("\n", "")


USAGE_ERRORS = [
    ["predict"],  # missing argument
    ["predict", "m", "x", "--top", "q"],  # not an integer
    ["predict", "m", "x", "--nope"],  # unknown option
    ["eval", "--batch-size", "1.5"],
    ["classes", "nope"],  # unknown command
    ["tree", "show"],
    ["train", "--lr", "fast"],
    ["init", "--arch"],  # option without its value
]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=" ".join)
def test_usage_type_and_range_errors_are_one_line(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "--help")
    assert "╭" not in err and out == ""


# ------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def nette(imagenette_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two classes of real images (2 train, 1 val each) and their tree."""
    from imagenette_sample import copy_sample

    root = tmp_path_factory.mktemp("nette2")
    data = copy_sample(imagenette_dir, root / "data", 2, 1, KEEP)
    small_tree(KEEP).save(root / "tree.json")
    return data, root / "tree.json"


def train_args(nette: tuple[Path, Path], project: Path, *extra: object) -> list[object]:
    data, tree = nette
    return ["train", "--arch", "n3hl", "--tree", tree, "--data", data, "--img-size", "32",
            "--batch-size", "4", "--epochs", "1", "--workers", "0", "--max-train-batches", "1",
            "--project", project, *extra]  # fmt: skip


FLOAT_OPTIONS = (
    "--lr",
    "--weight-decay",
    "--label-smoothing",
    "--warmup-epochs",
    "--min-crop-scale",
)
BAD_NUMBERS = [
    (option, value) for option in FLOAT_OPTIONS for value in ("nan", "inf", "-inf", "1e30", "-1")
]
BAD_NUMBERS += [
    ("--img-size", "100000"),
    ("--img-size", "7"),
    ("--batch-size", "10000000"),
    ("--epochs", "0"),
    ("--seed", "99999999999999999999999"),
    ("--devices", "0"),
    ("--devices", "-3"),
]


@pytest.mark.parametrize(("option", "value"), BAD_NUMBERS)
def test_bad_numbers_for_training_write_nothing(
    option: str, value: str, nette: tuple[Path, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    project = tmp_path / "runs"
    code, _, err = run_cli(train_args(nette, project, option, value), capsys)
    assert_one_line_error(code, err)
    assert not project.exists()


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("lr: .nan\n", "'lr' must be a finite number"),
        ("lr: .inf\n", "'lr' must be a finite number"),
        ("momentum: -.inf\n", "'momentum' must be a finite number"),
        ("warmup_epochs: .nan\n", "'warmup_epochs' must be a finite number"),
        ("lr: 1e400\n", "'lr' must be"),
        ("lr: 0.1\nepochs: 2\nlr: 0.2\n", "duplicate key 'lr' (lines 1 and 3)"),
        ("a: [" * 5000 + "\n", "not a readable YAML file"),
        ("\ufeffepochs: 1\nlr: nan\n", "must be a number"),  # the BOM is accepted, 'nan' is text
    ],
)
def test_bad_config_files_write_nothing(
    yaml_text: str, message: str, nette: tuple[Path, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml_text, encoding="utf-8")
    project = tmp_path / "runs"
    code, _, err = run_cli(train_args(nette, project, "--config", cfg), capsys)
    assert_one_line_error(code, err, message)
    assert not project.exists()


def test_a_diverging_run_stops_naming_epoch_and_step_and_saves_no_nan_weights(
    nette: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.torch import save_file

    trunk = build_model(
        "n3hl", small_tree(KEEP), img_size=32
    ).trunk  # huge weights: inf activations
    weights = {
        k: torch.full_like(v, 1e30) for k, v in trunk.state_dict().items() if v.is_floating_point()
    }
    save_file(weights, str(tmp_path / "huge.safetensors"))
    project = tmp_path / "runs"
    args = train_args(nette, project, "--trunk-weights", tmp_path / "huge.safetensors")
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "epoch 1, step 1", "the last good checkpoint is kept")
    run = project / "exp"
    assert not (run / "best").exists() and not (run / "last").exists()
    # the run directory says it is incomplete: resume explains, a new run takes it over
    code, _, err = run_cli(["train", "--resume", run], capsys)
    assert_one_line_error(code, err, "incomplete run", "before its first checkpoint")
    code, _, err = run_cli(train_args(nette, project), capsys)
    assert code == 0, err
    assert sorted(p.name for p in project.iterdir()) == ["exp"]  # no exp-2
    assert (run / "best" / "model.safetensors").is_file()


def test_a_run_directory_in_use_is_refused(
    nette: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nhlcli.training.rundir import locked_run_dir

    project = tmp_path / "runs"
    (project / "exp").mkdir(parents=True)
    with locked_run_dir(project / "exp"):  # another training run holds it
        code, _, err = run_cli(train_args(nette, project, "--exist-ok"), capsys)
        assert_one_line_error(code, err, "is in use by another training run", f"pid {os.getpid()}")
        assert not (project / "exp" / "args.yaml").exists()
        # an incomplete run that is still running is not taken over either
        code, _, err = run_cli(train_args(nette, project), capsys)
    assert code == 0, err
    assert sorted(p.name for p in project.iterdir()) == ["exp", "exp-2"]


# ------------------------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_during_build_tree_exits_130_and_writes_nothing(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from llm_server import LLMServer, Reply

    out = tmp_path / "tree.json"
    cache = tmp_path / "cache"
    env = {**os.environ, "OPENAI_API_KEY": "local", "PYTHONPATH": str(Path.cwd())}
    with LLMServer([Reply.text("{}", delay=30)]) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nhlcli", "build-tree", "--source", "llm", "--classes",
             "imagenette", "--levels", "2", "--base-url", server.url, "--cache-dir", str(cache),
             "-o", str(out)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for _ in range(600):  # until the request is in flight
            if server.requests or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert server.requests, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted"
    assert not out.exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


# ------------------------------------------------------------------------------------ trees
def chain_tree(depth: int) -> dict:
    nodes = [
        {"id": f"g{i}", "name": f"g{i}", "parent": f"g{i - 1}" if i else None}
        for i in range(depth - 1)
    ]
    classes = [{"id": "n01440764", "name": "tench", "parent": f"g{depth - 2}"}]
    return {"format": "nhl-tree/1", "levels": depth, "classes": classes, "nodes": nodes}


def cycle_tree(length: int) -> dict:
    nodes = [
        {"id": f"g{i}", "name": f"g{i}", "parent": f"g{(i + 1) % length}"} for i in range(length)
    ]
    classes = [{"id": "n01440764", "name": "tench", "parent": "g0"}]
    return {"format": "nhl-tree/1", "levels": None, "classes": classes, "nodes": nodes}


BAD_TREES = {
    "1,000-level chain": (json.dumps(chain_tree(1000)), "nhl accepts at most 100"),
    "10,000-level chain": (json.dumps(chain_tree(10_000)), "nhl accepts at most 100"),
    "101-level chain": (json.dumps(chain_tree(101)), "at least 101 levels deep"),
    "a cycle of 10,000": (json.dumps(cycle_tree(10_000)), "cycle: g0 -> g1"),
    "100k nested [": ("[" * 100_000, "nested too deeply"),
    "100k nested {": ('{"a":' * 100_000, "nested too deeply"),
    "a 5000-digit number": ('{"format": 1' + "0" * 5000 + "}", "not a readable JSON tree"),
    "not UTF-8": ("\udcff", "not UTF-8"),
}


@pytest.mark.parametrize("case", list(BAD_TREES))
def test_pathological_trees_are_one_line_errors(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, message = BAD_TREES[case]
    f = tmp_path / "t.json"
    f.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    for args in (
        ["tree", "validate", f],
        ["tree", "show", f],
        ["profile", "--arch", "n3hl", "-t", f],
    ):
        code, _, err = run_cli(args, capsys)
        assert_one_line_error(code, err, message)
        assert len(err) < 1000


def test_a_100_level_chain_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "t.json"
    f.write_text(json.dumps(chain_tree(100)), encoding="utf-8")
    code, out, err = run_cli(["tree", "validate", f], capsys)
    assert code == 0 and "valid" in out, err


def test_a_bom_is_accepted_in_class_files_trees_and_tables(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    classes = tmp_path / "c.txt"
    classes.write_text("\ufefftench\nchurch\n", encoding="utf-8")
    code, out, err = run_cli(["classes", "show", classes, "--json"], capsys)
    assert code == 0 and json.loads(out)["classes"][0]["wnid"] == "n01440764", err
    tree = tmp_path / "t.json"
    tree.write_text("\ufeff" + (work / "t.json").read_text(encoding="utf-8"), encoding="utf-8")
    code, _, err = run_cli(["tree", "validate", tree], capsys)
    assert code == 0, err
    table = tmp_path / "t.csv"
    table.write_text("\ufeffclass,level1\ntench,fish\nchurch,building\n", encoding="utf-8")
    code, _, err = run_cli(["build-tree", "--source", "superclass", "--classes", classes, "--table",
                            table, "-o", tmp_path / "o.json"], capsys)  # fmt: skip
    assert code == 0, err


def test_an_unclosed_quote_in_a_table_is_named_by_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    classes = tmp_path / "c.txt"
    classes.write_text("tench\nchurch\n", encoding="utf-8")
    table = tmp_path / "t.csv"
    table.write_text('class,level1\ntench,fish\nchurch,"building\n', encoding="utf-8")
    out = tmp_path / "o.json"
    code, _, err = run_cli(["build-tree", "--source", "superclass", "--classes", classes, "--table",
                            table, "-o", out], capsys)  # fmt: skip
    assert_one_line_error(code, err, "line 3: an unclosed quote")
    assert not out.exists()


# ------------------------------------------------------------------------------------ class files
def test_huge_class_files_fail_fast_with_a_short_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dupes = tmp_path / "dupes.txt"
    dupes.write_text("tench\n" * 50_000, encoding="utf-8")
    bad = tmp_path / "bad.txt"
    bad.write_text("".join(f"not a class {i}\n" for i in range(50_000)), encoding="utf-8")
    many = tmp_path / "many.txt"
    many.write_text("tench\n" * 100_001, encoding="utf-8")
    for f, message in ((dupes, "and 49989 more"), (bad, "and 49990 more"),
                       (many, "more than 100,000 classes")):  # fmt: skip
        code, _, err = run_cli(["classes", "show", f], capsys)
        assert_one_line_error(code, err, message)
        assert len(err) < 2100  # the first ten problems and a count, not 50,000 of them


# ------------------------------------------------------------------------------------ image folders
def test_symlink_loops_in_image_folders_are_followed_once(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(work / "photos", photos)
    os.symlink(".", photos / "loop")
    (photos / "sub").mkdir()
    os.symlink("..", photos / "sub" / "up")
    os.symlink(photos, photos / "sub" / "abs")
    code, out, err = run_cli(["predict", work / "m.onnx", photos, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["images"] == 3


def test_unreadable_pt_files_are_one_line(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip" * 10)
    code, _, err = run_cli(["predict", bad, work / "photos", "--trust-torchscript"], capsys)
    assert_one_line_error(code, err, "not a readable TorchScript file")


@pytest.mark.parametrize("blob", [b"\x80\x04garbage", b"PK\x03\x04 not a zip", b""])
def test_unreadable_trunk_weights_are_one_line(
    blob: bytes, nette: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(blob)
    project = tmp_path / "runs"
    code, _, err = run_cli(train_args(nette, project, "--trunk-weights", bad), capsys)
    assert_one_line_error(code, err, "not a readable state dict")
    assert len(err) < 400


@pytest.mark.parametrize("opset", ["99", "16", "0", "-1", "100000000000000000000"])
def test_export_opsets_outside_what_onnx_knows_are_one_line(
    opset: str, work: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.onnx"
    code, stdout, err = run_cli(
        ["export", work / "M", "-f", "onnx", "--opset", opset, "-o", out], capfd
    )
    assert_one_line_error(code, err, "--opset")
    assert stdout == "" and not out.exists()  # no graph dump on either stream, nothing written


def test_export_reports_the_opset_it_wrote(
    work: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import onnx

    out = tmp_path / "m.onnx"
    code, stdout, err = run_cli(
        ["export", work / "M", "-f", "onnx", "--opset", "18", "-o", out, "--json"], capfd
    )
    assert code == 0 and err == "", err
    assert json.loads(stdout)["opset"] == 18
    assert [o.version for o in onnx.load(str(out)).opset_import if o.domain in ("", "ai.onnx")] == [
        18
    ]
