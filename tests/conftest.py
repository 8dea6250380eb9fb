"""Test configuration: real WordNet data and real images from ../shared/data (tests only)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()

os.environ.setdefault("NLTK_DATA", str(SHARED_DATA / "nltk_data"))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One pytest worker per core: torch's own thread pool on top oversubscribes the CPU
    # (4-10x slower).
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def imagenette_dir(shared_data: Path) -> Path:
    return shared_data / "imagenette"


@pytest.fixture(scope="module")
def tree_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-made 3-level tree over the ten Imagenette classes, saved as a tree file."""
    from imagenette_sample import small_tree

    path = tmp_path_factory.mktemp("tree") / "tree.json"
    small_tree().save(path)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved, randomly initialised n3hl over the hand-made Imagenette tree, at 32 px."""
    import torch
    from imagenette_sample import small_tree

    from nhlcli.checkpoint import save_model
    from nhlcli.model.network import build_model

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model") / "n3hl"
    save_model(build_model("n3hl", small_tree(), img_size=32), out)
    return out
