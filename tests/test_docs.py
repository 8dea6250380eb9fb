"""Every ```python block of README.md and docs/*.md runs, so a documentation example cannot break.

The blocks of one file run in order in one namespace (like a notebook), in a fresh folder that
holds what the docs refer to: `models/n3hl-random` (a random N3HL for Imagenette), `photos/` (real
Imagenette images), `data/train|val/<wnid>/` (a few real images per class), and, as
$OPENAI_BASE_URL, a real local HTTP server speaking the OpenAI API (tests/llm_server.py).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from imagenette_sample import IMAGENETTE, copy_sample
from llm_server import LLMServer, rule_grouper

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def test_the_docs_have_python_blocks() -> None:
    with_blocks = [p.name for p in DOCS if python_blocks(p)]
    assert {"README.md", "api.md", "engine.md", "deploy.md", "llm.md", "trees.md"} <= set(
        with_blocks
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, imagenette_dir: Path) -> Path:
    import nhlcli as nhl

    root = tmp_path_factory.mktemp("docs")
    model = nhl.build_model("n3hl", "imagenette-wordnet-L3", img_size=64, seed=0)
    nhl.save_model(model, root / "models" / "n3hl-random")
    copy_sample(imagenette_dir, root / "data", 2, 2)
    photos = root / "photos"
    photos.mkdir()
    for wnid, _ in IMAGENETTE[:2]:
        first = sorted((imagenette_dir / "val" / wnid).iterdir())[0]
        shutil.copyfile(first, photos / first.name)
    return root


@pytest.mark.parametrize("doc", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run(
    doc: Path, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "work"
    shutil.copytree(workspace, here)
    monkeypatch.chdir(here)
    monkeypatch.setenv("NHL_CACHE_DIR", str(tmp_path / "llm-cache"))
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with LLMServer(fallback=rule_grouper) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        namespace: dict[str, object] = {"__name__": f"doc_{doc.stem}"}
        for i, block in enumerate(python_blocks(doc), start=1):
            # as a user's script runs: not under this file's `from __future__ import annotations`
            # (a documented dataclass would need a module in sys.modules for string annotations)
            code = compile(block, f"{doc.name} block {i}", "exec", dont_inherit=True)
            exec(code, namespace)
    assert os.getcwd() == str(here)
