"""Image folders, decoding, loaders and batch augmentation on real Imagenette files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from imagenette_sample import IMAGENETTE, copy_sample, one_thread, small_tree
from PIL import Image

from nhlcli.data.augment import IMAGENET_MEAN, IMAGENET_STD, Normalize, TrainAugment
from nhlcli.data.dataset import ImageFileDataset, collate_decoded, decode_square
from nhlcli.data.folders import index_image_folder, match_folder, tree_from_folders
from nhlcli.data.loader import ShardSampler, make_loader, train_sampler
from nhlcli.errors import NhlError

GRAY = "train/n03028079/ILSVRC2012_val_00049943.JPEG"  # a mode "L" file of Imagenette


_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def sample(imagenette_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sample(imagenette_dir, tmp_path_factory.mktemp("nette"), 3, 2)


def test_index_matches_wnid_folders_in_tree_order(sample: Path) -> None:
    tree = small_tree()
    folder = index_image_folder(sample / "train", tree)
    assert len(folder) == 30
    assert folder.counts() == [3] * 10
    assert folder.class_ids == tuple(tree.class_ids)
    # labels follow the tree's class order, not the folder order
    reordered = small_tree([c for c, _ in reversed(IMAGENETTE)])
    back = index_image_folder(sample / "train", reordered)
    first = back.samples[0]
    assert Path(first[0]).parent.name == "n03888257" and first[1] == 0


def test_folders_named_by_class_names(sample: Path, tmp_path: Path) -> None:
    root = tmp_path / "named"
    names = {"n01440764": "tench", "n02102040": "English_springer", "n03028079": "Church"}
    for wnid, folder in names.items():
        shutil.copytree(sample / "train" / wnid, root / folder)
    tree = small_tree(list(names))
    folder = index_image_folder(root, tree)
    assert folder.folders == {w: f for w, f in names.items()}
    assert folder.counts() == [3, 3, 3]
    assert match_folder("springer spaniel", tree) == []  # not a name of the class
    assert match_folder("English springer spaniel", tree) == ["n02102040"]  # ImageNet synonym


def test_missing_and_extra_folders_are_listed(sample: Path, tmp_path: Path) -> None:
    root = tmp_path / "partial"
    for wnid, _ in IMAGENETTE[:8]:
        shutil.copytree(sample / "train" / wnid, root / wnid)
    (root / "zebras").mkdir()
    (root / "zebras" / "a.jpg").write_bytes(b"")
    with pytest.raises(NhlError) as e:
        index_image_folder(root, small_tree())
    msg = str(e.value)
    assert "2 class(es) without images: n03445777 (golf ball), n03888257 (parachute)" in msg
    assert "1 folder(s) match no class of the tree: zebras" in msg
    # --allow-extra ignores the extra folder; the subset of 8 classes then fits
    ok = index_image_folder(root, small_tree([c for c, _ in IMAGENETTE[:8]]), allow_extra=True)
    assert ok.ignored_folders == ("zebras",) and len(ok) == 24
    with pytest.raises(NhlError, match="zebras"):
        index_image_folder(root, small_tree([c for c, _ in IMAGENETTE[:8]]))


def test_two_folders_for_one_class(sample: Path, tmp_path: Path) -> None:
    root = tmp_path / "dup"
    shutil.copytree(sample / "train" / "n01440764", root / "n01440764")
    shutil.copytree(sample / "train" / "n01440764", root / "tench")
    with pytest.raises(NhlError, match="folders 'n01440764' and 'tench' are both class n01440764"):
        index_image_folder(root, small_tree(["n01440764"]))


def test_tree_from_folders_uses_imagenet_names(sample: Path) -> None:
    tree = tree_from_folders(sample / "train")
    assert tree.class_ids == [c for c, _ in IMAGENETTE]
    assert tree.levels == 1
    assert tree.node("n03417042").name == "garbage truck"


def test_grayscale_becomes_rgb(imagenette_dir: Path) -> None:
    path = imagenette_dir / GRAY
    assert Image.open(path).mode == "L"
    x = decode_square(str(path), 73, 64)
    assert x.shape == (3, 64, 64) and x.dtype == torch.uint8
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_resize_shorter_side_and_centre_crop(tmp_path: Path) -> None:
    # 200x100: left quarter red, middle half green, right quarter blue
    img = Image.new("RGB", (200, 100), (0, 255, 0))
    img.paste((255, 0, 0), (0, 0, 50, 100))
    img.paste((0, 0, 255), (150, 0, 200, 100))
    img.save(tmp_path / "bands.png")
    x = decode_square(str(tmp_path / "bands.png"), 50, 50)  # -> 100x50, centre 50x50 = green
    assert x.shape == (3, 50, 50)
    inner = x[:, :, 2:-2]  # the outermost columns blend with the red/blue bands (bilinear)
    assert (inner[1] == 255).all() and (inner[0] == 0).all() and (inner[2] == 0).all()
    assert x[0, :, 0].max() > 0 and x[2, :, -1].max() > 0
    y = decode_square(str(tmp_path / "bands.png"), 50, 40)
    assert y.shape == (3, 40, 40)


def test_eval_and_train_sizes(sample: Path) -> None:
    samples = index_image_folder(sample / "val", small_tree()).samples
    ev = ImageFileDataset(samples, 64, "eval")
    tr = ImageFileDataset(samples, 64, "train")
    assert ev[0].image.shape == (3, 64, 64)
    assert tr[0].image.shape == (3, 74, 74)  # ceil(64 * 1.15): room for the random crop
    assert ev[0].bad_path is None and ev[0].label == 0


def test_corrupt_files_are_skipped_and_counted(sample: Path, tmp_path: Path) -> None:
    root = tmp_path / "corrupt"
    shutil.copytree(sample / "val" / "n01440764", root / "n01440764")
    good = sorted((root / "n01440764").iterdir())[0]
    (root / "n01440764" / "aaa_garbage.JPEG").write_bytes(b"not an image at all")
    (root / "n01440764" / "aab_truncated.JPEG").write_bytes(good.read_bytes()[:300])
    folder = index_image_folder(root, small_tree(["n01440764"]))
    assert len(folder) == 4
    ev = ImageFileDataset(folder.samples, 48, "eval")
    batch = collate_decoded([ev[i] for i in range(4)])
    assert batch.images.shape[0] == 2 and len(batch.bad_paths) == 2
    assert sorted(Path(p).name for p in batch.bad_paths) == [
        "aaa_garbage.JPEG",
        "aab_truncated.JPEG",
    ]
    # train mode keeps the batch size: readable neighbours stand in for the broken files
    tr = ImageFileDataset(folder.samples, 48, "train")
    tb = collate_decoded([tr[i] for i in range(4)])
    assert tb.images.shape[0] == 4 and len(tb.bad_paths) == 2
    # a batch of only broken files is empty, not a crash
    bad = [i for i, (f, _) in enumerate(folder.samples) if Path(f).name.startswith("aa")]
    empty = collate_decoded([ev[i] for i in bad])
    assert empty.images.shape == (0, 3, 48, 48) and empty.labels.numel() == 0


def test_loader_with_worker_processes_matches_in_process(sample: Path) -> None:
    samples = index_image_folder(sample / "val", small_tree()).samples
    ds = ImageFileDataset(samples, 40, "eval")
    a = list(make_loader(ds, 8, ShardSampler(len(ds)), workers=0, pin_memory=False))
    b = list(make_loader(ds, 8, ShardSampler(len(ds)), workers=2, pin_memory=False))
    assert len(a) == len(b) == 3
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels)


def test_samplers() -> None:
    s = train_sampler(50, seed=3)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(0)
    assert list(s) == e0 and sorted(e0) == list(range(50))
    s.set_epoch(1)
    assert list(s) != e0
    ranks = [train_sampler(50, seed=3, rank=r, world=2) for r in range(2)]
    for r in ranks:
        r.set_epoch(0)
    assert set(ranks[0]) | set(ranks[1]) == set(range(50))
    shards = [list(ShardSampler(7, r, 3)) for r in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]


def test_normalize_and_augment() -> None:
    x = torch.full((2, 3, 8, 8), 255, dtype=torch.uint8)
    y = Normalize()(x)
    for c in range(3):
        assert y[0, c, 0, 0].item() == pytest.approx((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c])
    imgs = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)
    aug = TrainAugment(32, randaugment_n=2, randaugment_m=9, min_crop_scale=0.5)
    torch.manual_seed(0)
    a = aug(imgs)
    torch.manual_seed(0)
    b = aug(imgs)
    torch.manual_seed(1)
    c = aug(imgs)
    assert a.shape == (4, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
