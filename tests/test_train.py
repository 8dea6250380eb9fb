"""`nhl train` on a small real sample of Imagenette (32 px, a few batches): run directory, resume,
kill -9, trunk weights, the baseline, and one-line errors for bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from imagenette_sample import IMAGENETTE, copy_sample, one_thread, small_tree
from safetensors.torch import load_file

from nhlcli.checkpoint import load_model
from nhlcli.errors import NhlError
from nhlcli.hierarchy.tree import Tree
from nhlcli.model.network import build_model
from nhlcli.training.checkpointing import load_train_state
from nhlcli.training.config import SETTINGS, build_config, read_config_file
from nhlcli.training.rundir import RESULT_COLUMNS, read_results
from nhlcli.training.trunk_weights import load_trunk_weights, read_state_dict

REPO = Path(__file__).resolve().parents[1]
FAST = ["--img-size", "32", "--workers", "0", "--max-val-batches", "1"]
SETTING_NAMES = {s.name for s in SETTINGS}


_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def nette(imagenette_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample(imagenette_dir, tmp_path_factory.mktemp("nette"), 4, 2)


def weights(run: Path, tag: str = "last") -> dict[str, torch.Tensor]:
    return load_file(str(run / tag / "model.safetensors"))


def test_train_writes_run_dir_and_resume_is_exact(
    nette: Path, tree_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = [
        "train",
        "--arch",
        "n3hl",
        "--tree",
        tree_file,
        "--data",
        nette,
        "--batch-size",
        "8",
        "--max-train-batches",
        "2",
        "--deterministic",
        "--optimizer",
        "sgd",
        "--project",
        tmp_path,
        *FAST,
    ]
    code, out, _ = run_cli([*common, "--epochs", "2", "--name", "straight", "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    straight = tmp_path / "straight"
    assert result["run_dir"] == str(straight)
    assert [r["epoch"] for r in result["history"]] == [1, 2]
    assert [r["train_images"] for r in result["history"]] == [16, 16]
    # run directory contents
    assert (straight / "args.yaml").is_file()
    assert (straight / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_results(straight)
    assert len(rows) == 2 and tuple(rows[0]) == RESULT_COLUMNS
    # lr is the rate of each epoch's last step; 4 steps, 2 of warm-up, peak 8·0.1/256 (SGD's
    # default rate: recipe auto, choosing fast, keeps the optimizer given):
    # step 2 is 2/3 of the warm-up, step 4 half-way down the cosine
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.003125 * 2 / 3, 0.0015625], rel=1e-5)
    assert (straight / "last").is_dir() and not (straight / "last").is_symlink()
    state = load_train_state(straight / "last")
    assert state["epoch"] == 2 and len(state["history"]) == 2
    # checkpoint round trip: the saved weights load into an identical network
    model = load_model(straight / "last")
    saved = weights(straight)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert model.preset.name == "n3hl" and model.tree.class_ids == small_tree().class_ids

    # the same run in two parts: 1 epoch, then --resume to 2 epochs
    assert run_cli([*common, "--epochs", "1", "--name", "part", "--json"], capsys)[0] == 0
    part = tmp_path / "part"
    assert len(read_results(part)) == 1
    code, out, _ = run_cli(["train", "--resume", part, "--epochs", "2", "--json"], capsys)
    assert code == 0
    a, b = weights(straight), weights(part)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = read_results(straight), read_results(part)
    for key in ("train_loss", "val_loss", "train_top1", "val_top1", "lr"):
        assert [r[key] for r in ra] == [r[key] for r in rb]
    # auto-numbering: the same name again gets -2
    assert (
        run_cli([*common, "--epochs", "1", "--name", "part", "--max-train-batches", "1"], capsys)[0]
        == 0
    )
    assert (tmp_path / "part-2" / "last" / "config.json").is_file()


def test_loss_falls(
    imagenette_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Twelve images of three classes, one batch per epoch: the training loss falls."""
    classes = [c for c, _ in IMAGENETTE[:3]]
    data = copy_sample(imagenette_dir, tmp_path / "three", 4, 1, classes)
    code, out, _ = run_cli(
        [
            "train",
            "--arch",
            "phl-small",
            "--data",
            data,
            "--epochs",
            "4",
            "--batch-size",
            "12",
            "--optimizer",
            "adamw",
            "--lr",
            "0.003",
            "--warmup-epochs",
            "0",
            "--randaugment-n",
            "0",
            "--min-crop-scale",
            "1",
            "--project",
            tmp_path,
            "--json",
            *FAST,
        ],
        capsys,
    )
    assert code == 0
    losses = [r["train_loss"] for r in json.loads(out)["history"]]
    assert len(losses) == 4
    assert losses[-1] < 0.75 * losses[0], losses


@pytest.mark.parametrize("arch", ["resnet50", "phl-small"])
def test_baseline_and_phl_without_tree(
    arch: str, nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --tree: one class per train folder (a 1-level tree), enough for ResNet50 and PHL."""
    code, out, _ = run_cli(
        [
            "train",
            "--arch",
            arch,
            "--data",
            nette,
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--max-train-batches",
            "1",
            "--optimizer",
            "adamw",
            "--project",
            tmp_path,
            "--json",
            *FAST,
        ],
        capsys,
    )
    assert code == 0
    run = Path(json.loads(out)["run_dir"])
    model = load_model(run / "best")
    assert model.preset.name == arch
    assert model.tree.class_ids == [c for c, _ in IMAGENETTE]
    assert model.tree.node("n03888257").name == "parachute"


def _torchvision_style_resnet50(path: Path) -> dict[str, torch.Tensor]:
    """A ResNet50 state dict with torchvision's key names and a 1000-way fc."""
    torch.manual_seed(5)
    r50 = build_model("resnet50", small_tree(), img_size=64)
    state = {k.removeprefix("trunk."): v.clone() for k, v in r50.state_dict().items()}
    state["fc.weight"] = torch.randn(1000, 2048)
    state["fc.bias"] = torch.randn(1000)
    torch.save(state, path)
    return state


def test_trunk_weights_report(tmp_path: Path) -> None:
    state = _torchvision_style_resnet50(tmp_path / "r50.pth")
    n3 = build_model("n3hl", small_tree(), img_size=64)
    report = load_trunk_weights(n3, tmp_path / "r50.pth")
    trunk_keys = list(n3.trunk.state_dict())
    assert sorted(report.loaded) == sorted(trunk_keys)
    assert report.missing == [] and report.shape_mismatch == []
    layer4 = [k for k in state if k.startswith("layer4.")]
    assert sorted(report.unused) == sorted([*layer4, "fc.weight", "fc.bias"])
    assert torch.equal(n3.trunk.layer3[5].conv2.weight, state["layer3.5.conv2.weight"])
    # the baseline takes the fc too when its shape fits; a 1000-way fc does not fit 10 classes
    r50 = build_model("resnet50", small_tree(), img_size=64)
    rep = load_trunk_weights(r50, tmp_path / "r50.pth")
    assert [m.split(":")[0] for m in rep.shape_mismatch] == ["fc.weight", "fc.bias"]
    assert "layer4.2.bn3.weight" in rep.loaded
    # .safetensors and a DDP "module." prefix read the same
    from safetensors.torch import save_file

    save_file(
        {f"module.{k}": v.contiguous() for k, v in state.items()}, str(tmp_path / "r.safetensors")
    )
    assert read_state_dict(tmp_path / "r.safetensors").keys() == state.keys()
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(NhlError, match="not a readable state dict"):
        load_trunk_weights(n3, tmp_path / "junk.pth")


def test_train_with_frozen_pretrained_trunk(
    nette: Path, tree_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = _torchvision_style_resnet50(tmp_path / "r50.pth")
    code, out, _ = run_cli(
        [
            "train",
            "--arch",
            "n3hl",
            "--tree",
            tree_file,
            "--data",
            nette,
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--max-train-batches",
            "2",
            "--trunk-weights",
            tmp_path / "r50.pth",
            "--freeze-trunk",
            "--project",
            tmp_path,
            "--json",
            *FAST,
        ],
        capsys,
    )
    assert code == 0
    result = json.loads(out)
    assert result["trunk_weights"]["loaded"] == len(
        build_model("n3hl", small_tree(), meta=True).trunk.state_dict()
    )
    run = Path(result["run_dir"])
    assert json.loads((run / "trunk_weights.json").read_text())["unused"][-2:] == [
        "fc.weight",
        "fc.bias",
    ]
    after = weights(run)
    # frozen: trunk weights AND batch-norm statistics are still the file's; the branches trained
    for key in ("conv1.weight", "layer3.5.conv2.weight", "layer2.0.bn1.running_mean"):
        assert torch.equal(after[f"trunk.{key}"], state[key]), key
    fresh = build_model("n3hl", small_tree(), img_size=32)
    assert any(
        not torch.equal(after[k], v)
        for k, v in fresh.state_dict().items()
        if k.startswith("levels.")
    )


def test_kill_9_leaves_last_checkpoint_loadable(
    nette: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "nhlcli",
        "train",
        "--arch",
        "phl-small",
        "--data",
        str(nette),
        "--epochs",
        "40",
        "--batch-size",
        "4",
        "--max-train-batches",
        "1",
        "--randaugment-n",
        "0",
        "--project",
        str(tmp_path),
        "--name",
        "killed",
        *FAST,
    ]
    started = time.monotonic()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    killed_mid_save = False
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (run / "last").exists():
                # wait for the next save to be under way, then kill the process in the middle of it
                if any(n.startswith(".tmp-epoch-") for n in os.listdir(run)):
                    killed_mid_save = True
                    break
                if len(read_results(run)) >= 4:
                    break
            time.sleep(0.002)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done = load_train_state(run / "last")["epoch"]
    assert done >= 1
    model = load_model(run / "last")
    assert model.num_classes == 10
    note = (
        f"killed {'during' if killed_mid_save else 'between'} saves after epoch {done}, "
        f"{time.monotonic() - started:.1f} s after the start"
    )
    # resume finishes the run and cleans up what the kill left behind
    code, _, _ = run_cli(["train", "--resume", run, "--epochs", str(done + 1), "--json"], capsys)
    assert code == 0
    assert load_train_state(run / "last")["epoch"] == done + 1
    assert len(read_results(run)) == done + 1
    leftovers = [n for n in os.listdir(run) if n.startswith(".tmp-") or ".new-" in n]
    assert leftovers == [] and not (run / ".last.old").exists()
    print(note)


# ----------------------------------------------------------------------------- settings and errors
def test_config_file_and_overrides(tmp_path: Path) -> None:
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text("arch: n3hl\ndata: d\nbatch-size: 16\nlr: 0.2\noptimizer: adamw\n")
    cfg = build_config(read_config_file(cfg_file), {"lr": 0.05, "epochs": None})
    assert (cfg.batch_size, cfg.lr, cfg.optimizer, cfg.epochs) == (16, 0.05, "adamw", 10)
    assert cfg.effective_weight_decay == 0.05
    assert build_config({"arch": "n3hl", "data": "d", "batch_size": 512}).effective_lr == 0.2


def one_line_error(args: list, capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = run_cli(args, capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_bad_inputs_exit_2_with_one_line(
    nette: Path, tree_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "--arch", "n3hl", "--tree", tree_file, "--project", tmp_path, *FAST]
    # a class of the tree without a folder
    partial = tmp_path / "partial"
    shutil.copytree(nette, partial)
    shutil.rmtree(partial / "train" / "n03888257")
    msg = one_line_error([*base, "--data", partial], capsys)
    assert "1 class(es) without images: n03888257 (parachute)" in msg
    # a folder that is not in the tree
    extra = tmp_path / "extra"
    shutil.copytree(nette, extra)
    shutil.copytree(nette / "train" / "n01440764", extra / "train" / "zebra")
    msg = one_line_error([*base, "--data", extra], capsys)
    assert "zebra" in msg and "--allow-extra" in msg
    # no train/ folder
    assert "has no train/ folder" in one_line_error([*base, "--data", nette / "train"], capsys)
    # config files: unknown key, wrong type
    bad = tmp_path / "bad.yaml"
    bad.write_text("bach_size: 8\n")
    msg = one_line_error([*base, "--data", nette, "--config", bad], capsys)
    assert "unknown key 'bach_size' (did you mean 'batch_size'?)" in msg
    bad.write_text("epochs: two\n")
    assert "'epochs' must be an integer" in one_line_error(
        [*base, "--data", nette, "--config", bad], capsys
    )
    # --resume: missing directory, a directory that is not a run
    assert "is not a run directory" in one_line_error(
        ["train", "--resume", tmp_path / "nope"], capsys
    )
    assert "no args.yaml" in one_line_error(["train", "--resume", nette], capsys)
    # an unknown preset, fp16 on a CPU
    msg = one_line_error([*base, "--data", nette, "--arch", "n9hl"], capsys)
    assert "unknown architecture 'n9hl'" in msg
    msg = one_line_error([*base, "--data", nette, "--amp", "fp16", "--device", "cpu"], capsys)
    assert "fp16 needs a CUDA device" in msg
    assert not any((tmp_path / n).exists() for n in ("exp", "exp-2"))  # nothing half-written


# ----------------------------------------------------------------------------- --tree wordnet
HUMAN = {"n01440764": "tench", "n02102040": "English springer", "n03028079": "church",
         "n03417042": "garbage truck", "n03445777": "golf ball"}  # fmt: skip


def test_tree_wordnet_builds_the_folders_tree_and_the_run_keeps_it(
    imagenette_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Human folder names, n3hl, `--tree wordnet`: the WordNet tree of the five classes with three
    levels; the run keeps it as tree.json, args.yaml names it, the checkpoints carry it, resume
    uses it. Without --tree a preset that nests levels gets the same tree."""
    import yaml

    data = copy_sample(imagenette_dir, tmp_path / "data", 2, 1, list(HUMAN))
    for split in ("train", "val"):
        for wnid, name in HUMAN.items():
            (data / split / wnid).rename(data / split / name)
    common = ["train", "--arch", "n3hl", "--data", data, "--epochs", "1", "--batch-size", "4",
              "--max-train-batches", "1", "--project", tmp_path / "runs", *FAST]  # fmt: skip
    code, out, err = run_cli([*common, "--tree", "wordnet", "--name", "wn"], capsys)
    assert code == 0, err
    assert "tree: WordNet over the 5 class folders, nodes per level [2, 4, 5]" in out + err
    run = tmp_path / "runs" / "wn"
    kept = Tree.load(run / "tree.json")
    assert kept.levels == 3 and kept.provenance["source"] == "wordnet"
    assert sorted(kept.class_ids) == sorted(HUMAN)
    assert kept.node("n02102040").name == "English springer"
    args = yaml.safe_load((run / "args.yaml").read_text(encoding="utf-8"))
    assert args["tree"] == str((run / "tree.json").resolve())
    assert load_model(run / "best").tree == kept
    code, out, err = run_cli(["train", "--resume", run, "--epochs", "2", "--json"], capsys)
    assert code == 0, err
    assert load_model(run / "last").tree == kept and json.loads(out)["epochs"] == 2
    # without --tree: the same tree, for a preset that nests levels
    code, out, err = run_cli([*common, "--name", "default", "--json"], capsys)
    assert code == 0, err
    assert (
        Tree.load(tmp_path / "runs" / "default" / "tree.json").to_dict()["nodes"]
        == (kept.to_dict()["nodes"])
    )
    # a folder that names no WordNet class: one line, naming the folder (and, by default, --tree)
    (data / "train" / "tench").rename(data / "train" / "my fish")
    (data / "val" / "tench").rename(data / "val" / "my fish")
    msg = one_line_error([*common, "--tree", "wordnet"], capsys)
    assert "folder 'my fish'" in msg
    msg = one_line_error(common, capsys)
    assert "folder 'my fish'" in msg and "--tree FILE" in msg


def test_every_train_help_example_parses() -> None:
    """The examples of `nhl train --help` name only options that exist, with valid values."""
    import shlex

    from typer.main import get_command

    from nhlcli.cli.app import app
    from nhlcli.cli.train_cmd import EPILOG

    train = get_command(app).commands["train"]  # type: ignore[attr-defined]
    lines = [ln.strip()[2:] for ln in EPILOG.splitlines() if ln.strip().startswith("$ ")]
    assert len(lines) >= 8
    for line in lines:
        words = shlex.split(line, comments=True)
        words = words[: words.index(">")] if ">" in words else words  # a shell redirection
        if words[0] == "torchrun":
            words = words[words.index("nhlcli") + 1 :]
        assert words[:2] == ["nhl", "train"] or words[0] == "train", line
        args = words[2:] if words[0] == "nhl" else words[1:]
        ctx = train.make_context("train", list(args))  # a click UsageError fails the test
        given = {k: v for k, v in ctx.params.items() if k in SETTING_NAMES and v is not None}
        if "arch" in given:  # the settings are valid together (build_config raises if not)
            build_config({}, given)
