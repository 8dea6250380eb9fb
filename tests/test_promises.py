"""What nhl promises (docs/promises.md): outputs never overwrite inputs, loading runs no code unless
trusted, and every bad input is one `error:` line with exit code 2 and nothing written."""

from __future__ import annotations

import hashlib
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
from nhlcli.export import export_model
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
    from nhlcli.train.rundir import locked_run_dir

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
