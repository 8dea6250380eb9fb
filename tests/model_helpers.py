"""Small presets and helpers for the model tests (tiny widths keep the tests fast)."""

from __future__ import annotations

import torch

from nhlcli.hierarchy.tree import Tree, TreeNode
from nhlcli.model.network import HierNet
from nhlcli.model.presets import BlockSpec, Preset, StageSpec, TrunkSpec

B = BlockSpec
# stem (3->64) + one stage of 2 blocks 64->32, stride 2: output 32 channels at 1/8 of the input
TINY_TRUNK = TrunkSpec("tiny", (StageSpec(2, 64, 8, 32, 2),))


def tiny_preset(levels: int = 3, head: str = "per_class") -> Preset:
    """Every block kind: projections, an identity-shortcut first block, 2-block nodes."""
    specs: list[tuple[BlockSpec, ...]] = [
        (B(32, 8, 16, 2),),  # projection (stride 2)
        (B(16, 4, 16, 1), B(16, 4, 8, 2)),  # identity shortcut first (gather path), then projection
        (B(8, 4, 8, 1),),  # identity shortcut
        (B(8, 2, 4, 1),),  # projection (channels)
    ][:levels]
    return Preset(f"tiny{levels}", TINY_TRUNK, tuple(specs), head, "tiny test preset")


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so that node mix-ups change outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if t.is_floating_point() and ("bn" in name or "downsample.1" in name):
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                elif name.endswith(("running_mean", "bias")):
                    t.copy_(torch.randn(t.shape, generator=g) * 0.2)
                elif name.endswith("weight"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)


def set_chunks(model: torch.nn.Module, chunk_bytes: int | None) -> None:
    """Every level on CPU chunks of about `chunk_bytes` (None: whole levels)."""
    from nhlcli.model.execution import CpuChunks, WholeLevel, set_execution

    set_execution(model, lambda: WholeLevel() if chunk_bytes is None else CpuChunks(chunk_bytes))


def images(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def logits(model: HierNet, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def two_groups() -> Tree:
    """A{a1, a2}, B{b1, b2}; classes listed interleaved (a1, b1, a2, b2: positions 0..3) to test
    tree order."""
    nodes = [TreeNode("A", "A", None), TreeNode("B", "B", None)]
    parents = {"a1": "A", "b1": "B", "a2": "A", "b2": "B"}
    return Tree([TreeNode(c, c, p) for c, p in parents.items()], nodes)


def named_tree() -> Tree:
    """Two top groups, three sub-groups, five classes with real-looking names."""
    nodes = [
        TreeNode("animal", "animal", None),
        TreeNode("thing", "thing", None),
        TreeNode("cat", "domestic cat", "animal"),
        TreeNode("dog", "dog", "animal"),
        TreeNode("tool", "tool", "thing"),
    ]
    classes = [
        TreeNode("c_saw", "chain saw", "tool"),
        TreeNode("c_tabby", "tabby", "cat"),
        TreeNode("c_beagle", "beagle", "dog"),
        TreeNode("c_siamese", "Siamese cat", "cat"),
        TreeNode("c_pug", "pug", "dog"),
    ]
    return Tree(classes, nodes)


CN = BlockSpec
# ConvNeXt-V2 stem (3->96, /4) + one stage 96->16 (1x1 downsample, 1 block, MLP 32)
TINY_CONVNEXT_TRUNK = TrunkSpec("tiny-cn", (StageSpec(1, 96, 32, 16, 1, "convnextv2"),))


def tiny_convnext_preset() -> Preset:
    """A tiny ConvNeXt-V2 NHL: 3 levels (1x1 downsample, 1x1, 2x2/2), layer scale, LN heads."""
    specs = (
        (CN(16, 32, 8, 1, "convnextv2", True),),
        (CN(8, 16, 8, 2, "convnextv2", True),),
        (CN(8, 16, 4, 1, "convnextv2", True),),
    )
    return Preset(
        "tiny-convnext", TINY_CONVNEXT_TRUNK, specs, "per_class", "tiny test", head_norm=True
    )


def randomize_all(model: torch.nn.Module, seed: int = 0, std: float = 0.2) -> None:
    """Every parameter random (norm affines near 1), so that node mix-ups change outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * std
            is_scale = "norm" in name and name.endswith("weight")
            p.copy_(1.0 + noise if is_scale or name.endswith("gamma") else noise)
