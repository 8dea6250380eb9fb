"""How a grouped level is executed: small, named strategies that partition its nodes and images.

A level (`nhlcli.model.levels.Level`) computes the same thing whatever its strategy: every node
reads its parent's slice and runs its blocks. The strategy only says in which pieces:

* `WholeLevel`: all nodes and all images at once (a GPU, and whenever the model is traced,
  exported or compiled: a traced graph must not keep a batch split for every batch size);
* `CpuChunks` (every level's default): on a CPU, nodes in chunks whose largest intermediate
  tensor is cache-sized, and large eval batches in groups of images (see its doc); elsewhere, or
  while tracing, the whole level;
* `Compiled`: the whole level through `torch.compile` (compiled once per level).

Give a level a strategy with ``level.execution = WholeLevel()`` (`set_execution` for a model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torch import nn

    from nhlcli.model.levels import Level

# CpuChunks: the largest intermediate tensor of a chunk of nodes, and the nodes an image group
# leaves a chunk (see CpuChunks)
CPU_CHUNK_BYTES = 8 << 20
MIN_CHUNK_NODES = 64

Span = tuple[int, int]


def tracing() -> bool:
    """True while the model is traced or exported (TorchScript, ONNX, torch.compile)."""
    return bool(
        torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
    )


@dataclass(frozen=True)
class Partition:
    """Batch ranges run one after the other, and node ranges run one after the other per group."""

    images: tuple[Span, ...]
    nodes: tuple[Span, ...]

    @staticmethod
    def whole(n_images: int, n_nodes: int) -> Partition:
        return Partition(((0, n_images),), ((0, n_nodes),))


def ranges(total: int, size: int) -> tuple[Span, ...]:
    """[0, total) in consecutive ranges of `size` (the last may be shorter)."""
    size = max(1, size)
    return tuple((a, min(a + size, total)) for a in range(0, total, size))


class Execution:
    """A strategy: `partition` says how a level's nodes and images are split; `run` runs it."""

    name = ""

    def partition(self, level: Level, x: torch.Tensor) -> Partition:
        raise NotImplementedError

    def run(self, level: Level, x: torch.Tensor) -> torch.Tensor:
        return level.run_partition(x, self.partition(level, x))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class WholeLevel(Execution):
    """All nodes and all images of the level as one computation."""

    name = "whole"

    def partition(self, level: Level, x: torch.Tensor) -> Partition:
        return Partition.whole(x.shape[0], level.n)


class CpuChunks(Execution):
    """On the CPU, nodes in chunks and (where images are independent) images in groups.

    A level's n·c-channel tensors (GBs at k = 1000) turn every norm, ReLU and add into a pass
    over main memory, while per-node work is large enough for oneDNN. So nodes run in chunks
    whose largest intermediate tensor is about `chunk_bytes` (each chunk still one grouped
    computation). Where the level's images are computed independently (batch norm on running
    statistics, layer norms, GRN), a large batch also runs in groups of images, so that a chunk
    keeps at least `min_chunk_nodes` nodes: with nodes chunked alone, batch 32 left 10 nodes per
    chunk in n3hl's 1000-node leaf level, whose 100 chunks of strided channel slices spent 32 %
    of the level's time in `aten::cat` (22.4 s on one thread; 7.0 s with image groups).

    Each image group reads all of the level's weights again, and wide chunks pay off only where
    the nodes read different parent slices (a narrow chunk there cuts and concatenates strided
    slices of the input). Where every node reads one shared input (a level 1) a chunk of any
    width is one dense convolution of that input, so such a level runs its batch whole, in
    narrower chunks: phl-latesp's 100-node level (4.6 MB of weights per node) ran batch 8 as 8
    groups of one image, each reading all 460 MB of its weights (the forward 1.9x slower).
    """

    name = "cpu-chunks"

    def __init__(
        self, chunk_bytes: int = CPU_CHUNK_BYTES, min_chunk_nodes: int = MIN_CHUNK_NODES
    ) -> None:
        self.chunk_bytes, self.min_chunk_nodes = int(chunk_bytes), int(min_chunk_nodes)

    def partition(self, level: Level, x: torch.Tensor) -> Partition:
        n_images = x.shape[0]
        if x.device.type != "cpu" or tracing():
            return Partition.whole(n_images, level.n)
        per_image = level.node_image_bytes(x)
        images: tuple[Span, ...] = ((0, n_images),)
        shared_input = level.splits_nodes and level.wiring.n_inputs == 1
        if n_images > 1 and level.images_independent() and not shared_input:
            nodes = min(level.n, self.min_chunk_nodes) if level.splits_nodes else level.n
            size = self.chunk_bytes // max(per_image * nodes, 1)
            if size < n_images:
                images = ranges(n_images, size)
        node_ranges: tuple[Span, ...] = ((0, level.n),)
        if level.splits_nodes:
            group = images[0][1] - images[0][0]
            node_ranges = ranges(level.n, self.chunk_bytes // max(per_image * group, 1))
        return Partition(images, node_ranges)

    def __repr__(self) -> str:
        return f"CpuChunks(chunk_bytes={self.chunk_bytes}, min_chunk_nodes={self.min_chunk_nodes})"


class Compiled(Execution):
    """The whole level through `torch.compile` (compiled on first use, once per level)."""

    name = "compiled"

    def __init__(self, **compile_options: Any) -> None:
        self.options = compile_options
        self._compiled: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}

    def partition(self, level: Level, x: torch.Tensor) -> Partition:
        return Partition.whole(x.shape[0], level.n)

    def run(self, level: Level, x: torch.Tensor) -> torch.Tensor:
        fn = self._compiled.get(id(level))
        if fn is None:

            def whole(x: torch.Tensor) -> torch.Tensor:
                return level.run_partition(x, Partition.whole(x.shape[0], level.n))

            fn = self._compiled[id(level)] = torch.compile(whole, **self.options)
        return fn(x)

    def __deepcopy__(self, memo: dict) -> Compiled:
        return Compiled(**self.options)


def set_execution(model: nn.Module, make: Callable[[], Execution]) -> None:
    """Give every grouped level of `model` its own strategy `make()` (e.g. ``WholeLevel``)."""
    from nhlcli.model.levels import Level

    for m in model.modules():
        if isinstance(m, Level):
            m.execution = make()
