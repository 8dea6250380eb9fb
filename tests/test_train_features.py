"""Training features: TensorBoard, EMA, MixUp/CutMix, accumulation, capped class-balanced
validation, --save-every, --patience, --recipe, --print-config and resolved args.yaml."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import run_cli
from imagenette_sample import copy_sample, one_thread
from safetensors.torch import load_file

from nhlcli.checkpoint import load_model
from nhlcli.data.loader import balanced_subset
from nhlcli.data.mixing import BatchMixer, mixed_loss
from nhlcli.training.checkpointing import load_train_state
from nhlcli.training.config import SETTINGS, build_config
from nhlcli.training.distributed import setup_distributed
from nhlcli.training.engine import train
from nhlcli.training.progress import SilentReporter
from nhlcli.training.rundir import read_args, read_results
from nhlcli.training.setup import prepare_run

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def nette(imagenette_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample(imagenette_dir, tmp_path_factory.mktemp("nette"), 2, 3)


def settings(nette: Path, tree_file: Path, project: Path, **kw: object) -> dict:
    base = {
        "arch": "n3hl", "tree": str(tree_file), "data": str(nette), "epochs": 1,
        "batch_size": 5, "img_size": 32, "workers": 0, "max_train_batches": 2,
        "randaugment_n": 0, "project": str(project), "deterministic": True,
    }  # fmt: skip
    return {**base, **kw}


def test_balanced_subset_takes_every_class_in_turn() -> None:
    labels = [0] * 6 + [1] * 6 + [2] * 2  # sorted like an image folder
    picked = balanced_subset(labels, 7, seed=3)
    counts = [sum(labels[i] == c for i in picked) for c in range(3)]
    assert len(picked) == 7 and counts == [3, 2, 2] and picked == sorted(picked)
    assert balanced_subset(labels, 7, seed=3) == picked  # fixed by the seed
    assert balanced_subset(labels, 7, seed=4) != picked
    assert balanced_subset(labels, 99, seed=0) == list(range(14))


def test_capped_validation_sees_every_class(nette: Path, tree_file: Path, tmp_path: Path) -> None:
    # 3 val images per class, sorted by class: the first 2 batches of 5 would hold 4 classes only
    cfg = build_config(settings(nette, tree_file, tmp_path, max_val_batches=2))
    ctx = setup_distributed("cpu")
    with contextlib.ExitStack() as held:
        val = prepare_run(cfg, None, SilentReporter(), ctx, held).val_loader.dataset.samples
    assert len(val) == 10 and len({y for _, y in val}) == 10
    with contextlib.ExitStack() as held:
        again = prepare_run(cfg, None, SilentReporter(), ctx, held).val_loader.dataset.samples
    assert again == val  # fixed by the seed
    assert train(cfg).history[0]["val_top1"] is not None


def test_mixup_and_cutmix_mix_images_and_labels() -> None:
    torch.manual_seed(0)
    x = torch.rand(6, 3, 8, 8)
    y = torch.arange(6)
    mixed, ya, yb, lam = BatchMixer(mixup=1.0)(x, y)
    assert torch.equal(ya, y) and lam.shape == (6,) and ((lam >= 0) & (lam <= 1)).all()
    expected = (1 - lam.view(-1, 1, 1, 1)) * x + lam.view(-1, 1, 1, 1) * x[yb]
    assert torch.allclose(mixed, expected, atol=1e-6)
    mixed, ya, yb, lam = BatchMixer(cutmix=1.0)(x, y)
    for i in range(6):  # each pixel comes from the image or its partner; λ is the pasted area
        from_partner = (mixed[i] != x[i]).any(0)
        assert torch.equal(mixed[i][:, from_partner], x[yb[i]][:, from_partner])
        if yb[i] != i:
            assert float(lam[i]) == pytest.approx(float(from_partner.float().mean()), abs=1e-6)
    crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1, reduction="none")
    logits = torch.randn(6, 6)
    want = ((1 - lam) * crit(logits, ya) + lam * crit(logits, yb)).mean()
    assert torch.allclose(mixed_loss(crit, logits, ya, yb, lam), want)
    assert not BatchMixer().enabled


def test_training_with_mixing_accumulation_and_save_every(
    nette: Path, tree_file: Path, tmp_path: Path
) -> None:
    cfg = build_config(
        settings(nette, tree_file, tmp_path, epochs=2, mixup=0.5, cutmix=1.0, accumulate=2,
                 max_train_batches=3, save_every=1, max_val_batches=1, optimizer="sgd")
    )  # fmt: skip
    result = train(cfg)
    run = result.run_dir
    assert run is not None
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in result.history)
    state = load_train_state(run / "last")
    assert state["scheduler"]["last_epoch"] == 2 * 2  # 3 batches, accumulate 2 -> 2 steps/epoch
    for n in (1, 2):
        assert load_train_state(run / f"epoch-{n:04d}")["epoch"] == n
        load_model(run / f"epoch-{n:04d}")
    args = read_args(run)  # the resolved settings, not null/auto
    assert args["lr"] == pytest.approx(0.1 * 5 * 2 / 256) and args["device"] == "cpu"
    assert args["amp"] == "none" and args["workers"] == 0 and args["channels_last"] is False
    assert args["weight_decay"] == 1e-4


def test_ema_is_saved_validated_and_resumed_exactly(
    nette: Path, tree_file: Path, tmp_path: Path
) -> None:
    straight = train(build_config(settings(nette, tree_file, tmp_path, epochs=2, ema=0.5,
                                           name="straight")))  # fmt: skip
    run = straight.run_dir
    assert run is not None
    rows = read_results(run)
    assert all(r["ema_val_top1"] != "" for r in rows)
    assert straight.best_ema_top1 is not None
    ema = load_model(run / "last-ema")
    raw = load_model(run / "last")
    assert os.path.samefile(
        run / "last-ema" / "model.safetensors", run / "last/ema/model.safetensors"
    )
    assert load_model(run / "best-ema").num_classes == 10
    diff = [not torch.equal(a, b) for a, b in zip(ema.parameters(), raw.parameters(), strict=True)]
    assert any(diff)  # averaged weights differ from the last weights
    # the same run in two parts gives the same EMA weights
    part = build_config(settings(nette, tree_file, tmp_path, epochs=1, ema=0.5, name="part"))
    first = train(part)
    assert first.run_dir is not None
    train(build_config(settings(nette, tree_file, tmp_path, epochs=2, ema=0.5, name="part")),
          resume_dir=first.run_dir)  # fmt: skip
    a = load_file(str(run / "last-ema" / "model.safetensors"))
    b = load_file(str(first.run_dir / "last-ema" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tensorboard_files_are_written(nette: Path, tree_file: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(build_config(settings(nette, tree_file, tmp_path, epochs=2, tensorboard=True,
                                         max_val_batches=1)))  # fmt: skip
    assert result.run_dir is not None
    events = list((result.run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(result.run_dir / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss/train", "loss/val", "top1/val", "lr", "images_per_s"} <= tags
    assert {f"top1_level/val_level{d}" for d in (1, 2, 3)} <= tags
    val = [e.value for e in acc.Scalars("top1/val")]
    assert [e.step for e in acc.Scalars("top1/val")] == [1, 2]
    assert val == pytest.approx([r["val_top1"] for r in result.history])
    leaf = [e.value for e in acc.Scalars("top1_level/val_level3")]
    assert leaf == pytest.approx(val)  # the leaf level is top-1


def test_patience_stops_early(nette: Path, tree_file: Path, tmp_path: Path) -> None:
    result = train(build_config(settings(nette, tree_file, tmp_path, epochs=6, patience=1,
                                         max_train_batches=1, max_val_batches=1)))  # fmt: skip
    tops = [r["val_top1"] for r in result.history]
    # stops at the first epoch that is not better than the best so far
    first_flat = next((i for i in range(1, 6) if tops[i] <= max(tops[:i])), None)
    if first_flat is None:
        assert len(tops) == 6 and result.stopped_early is None
    else:
        assert len(tops) == first_flat + 1 == result.stopped_early


def test_recipe_print_config_and_resume_from_last(
    nette: Path, tree_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = build_config({"arch": "n3hl", "data": "d", "recipe": "fast", "min_crop_scale": 0.5})
    assert (cfg.optimizer, cfg.lr, cfg.randaugment_n) == ("adamw", 0.002, 0)
    assert cfg.zero_init_residual is True
    assert cfg.min_crop_scale == 0.5  # options win over the recipe
    code, out, _ = run_cli(["train", "--print-config", "--recipe", "paper", "--lr", "0.3"], capsys)
    assert code == 0
    printed = yaml.safe_load(out)
    assert list(printed) == [s.key for s in SETTINGS]
    assert printed["epochs"] == 300 and printed["lr"] == 0.3 and printed["seed"] == 0
    # a run resumed through its last/ checkpoint, extended to more epochs
    first = train(build_config(settings(nette, tree_file, tmp_path, name="ext", recipe="fast")))
    assert first.run_dir is not None
    assert read_args(first.run_dir)["recipe"] == "fast"
    assert read_args(first.run_dir)["zero_init_residual"] is True
    # a run's args.yaml and --print-config spell the keys alike, and each is a --config file
    args_file = first.run_dir / "args.yaml"
    assert set(yaml.safe_load(args_file.read_text())) == set(printed)
    code, from_args, _ = run_cli(["train", "--config", args_file, "--print-config"], capsys)
    assert code == 0 and yaml.safe_load(from_args) == yaml.safe_load(args_file.read_text())
    printed_file = tmp_path / "printed.yaml"
    printed_file.write_text(from_args)
    code, again, _ = run_cli(["train", "--config", printed_file, "--print-config"], capsys)
    assert code == 0 and again == from_args
    code, _, _ = run_cli(["train", "--resume", first.run_dir / "last", "--epochs", "2"], capsys)
    assert code == 0 and len(read_results(first.run_dir)) == 2


def test_cli_recipe_auto_is_printed_recorded_and_kept_on_resume(
    nette: Path, tree_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        ["train", "--arch", "n3hl", "--tree", tree_file, "--data", nette, "--epochs", "1",
         "--batch-size", "5", "--img-size", "32", "--workers", "0", "--max-train-batches", "2",
         "--max-val-batches", "1", "--project", tmp_path, "--name", "auto"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    run = tmp_path / "auto"
    assert out.splitlines()[0] == "recipe auto → fast: 2 optimizer steps < 10,000"
    args = read_args(run)
    assert args["recipe"] == "auto" and list(args)[list(args).index("recipe") + 1] == "recipe_auto"
    assert args["recipe_auto"]["recipe"] == "fast"
    assert args["recipe_auto"]["reason"] == "2 optimizer steps < 10,000"
    assert (args["optimizer"], args["lr"], args["min_crop_scale"]) == ("adamw", 0.002, 0.35)
    # resumed for more epochs: the recipe chosen at the start is kept, not decided again
    code, out, err = run_cli(["train", "--resume", run, "--epochs", "3"], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == (
        "recipe auto → fast, as chosen when the run started: 2 optimizer steps < 10,000"
    )
    again = read_args(run)
    assert again["recipe_auto"] == args["recipe_auto"] and again["optimizer"] == "adamw"
    assert len(read_results(run)) == 3


def test_short_flags_and_a_preset_name_in_any_case(
    nette: Path, tree_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        ["train", "-a", "N3HL", "-t", tree_file, "--data", nette, "-b", "5", "--epochs", "1",
         "--img-size", "32", "--workers", "0", "--max-train-batches", "1", "--max-val-batches",
         "1", "--randaugment-n", "0", "--project", tmp_path, "--json"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    args = read_args(Path(json.loads(out)["run_dir"]))
    assert (args["arch"], args["batch_size"]) == ("N3HL", 5)
    assert (
        json.loads((Path(json.loads(out)["run_dir"]) / "best" / "config.json").read_text())["arch"]
        == "n3hl"
    )
