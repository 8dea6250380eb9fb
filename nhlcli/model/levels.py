"""`Level`: what every block kind's grouped level shares (attention scales, execution, preparation).

A level holds ALL n nodes of one tree level as one computation (the grouped ops:
`nhlcli.model.grouped_ops`); each kind's level lives in its kind's module (`GroupedLevel` in
`kinds/resnet_common.py`, `ConvNeXtLevel` in `kinds/convnextv2.py`) and says only what a range
of nodes computes (`run_nodes`: read the parents, run the blocks). This base class runs the
level the way its execution strategy (`nhlcli.model.execution`) partitions it:

    for each group of images:            (the strategy's partition)
        for each range of nodes:
            out[range] = run_nodes(x[images], range)

Inference preparation (`prepare`, called by `HierNet.prepare_inference` / `nhl.prepare`): the
weights a level derives from its parameters on every forward (the parent-reading convolutions'
weights in fanout-bucket order, ConvNeXt's folded layer norms) are made once and kept while the
level serves. They are used only in eval mode without gradients, and dropped by construction:
on `train()` (the preparation itself ends), on `load_state_dict` and on moving the model
(`.to`, `.half()`), on any forward with gradients (the only way to an optimizer step), and they
are never copied (`copy.deepcopy`, pickling). Writing weights in place without gradients
(``.data``, ``copy_`` under ``no_grad``) while prepared needs `prepare` again. Without
preparation, derived weights are made once per forward, for all its image groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nhlcli.model.execution import CpuChunks, Execution, Partition, Span, tracing
from nhlcli.model.grouped_ops import NodeRange, Wiring, range_inputs, split_rows
from nhlcli.model.presets import BlockSpec


class Prepared:
    """A prepared level's node ranges (their derived weights) for the partition last used."""

    def __init__(self) -> None:
        self.spans: tuple[Span, ...] | None = None
        self.ranges: list[NodeRange] = []


class Level(nn.Module):
    """Base class of every kind's grouped level (see the module doc).

    Subclasses set ``specs``, ``wiring``, ``n`` and call ``super().__init__()``; they implement
    `run_nodes` and `node_image_bytes`, and say whether their nodes may run in ranges
    (``splits_nodes``) and whether their images are computed independently
    (`images_independent`).
    """

    specs: tuple[BlockSpec, ...]
    wiring: Wiring
    n: int
    #: whether the nodes may run in several ranges (`run_nodes` on a `NodeRange` of them)
    splits_nodes = False

    def __init__(self) -> None:
        super().__init__()
        self.execution: Execution = CpuChunks()
        self._scales: tuple[float, ...] | None = None
        self._scale_cache: dict[str, torch.Tensor] = {}
        self._prepared: Prepared | None = None
        self._plans: dict[tuple[Span, ...], tuple[list[int], list[list[int]], list[Wiring]]] = {}

    # ------------------------------------------------------------------ what a kind says
    def run_nodes(
        self, x: torch.Tensor, nodes: NodeRange, scale: torch.Tensor | None
    ) -> torch.Tensor:
        """The nodes of `nodes` on input x (their inputs, read through ``nodes.wiring``);
        `scale`: their attention factors, one per channel at the kind's attention point."""
        raise NotImplementedError

    def node_image_bytes(self, x: torch.Tensor) -> int:
        """Bytes of one node's largest intermediate tensor for one image of x."""
        raise NotImplementedError

    def images_independent(self) -> bool:
        """Whether each image is computed alone (so the batch may run in groups of images)."""
        return True

    # ------------------------------------------------------------------ running
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.execution.run(self, x)

    def run_partition(self, x: torch.Tensor, part: Partition) -> torch.Tensor:
        """The level on x, group of images after group, range of nodes after range."""
        ranges = self._node_ranges(part.nodes)
        scale = self._scale_tensor(x.device)
        if len(part.images) == 1:
            return self._run_ranges(x, ranges, scale)
        return torch.cat([self._run_ranges(x[a:b], ranges, scale) for a, b in part.images])

    def _run_ranges(
        self, x: torch.Tensor, ranges: list[NodeRange], scale: torch.Tensor | None
    ) -> torch.Tensor:
        if len(ranges) == 1:
            return self.run_nodes(x, ranges[0], scale)
        sizes, pieces, _ = self._plan(tuple((r.start, r.stop) for r in ranges))
        if not sizes:  # one input slice shared by all nodes
            inputs = [x] * len(ranges)
        else:
            c = x.shape[1] // self.wiring.n_inputs
            parts = torch.split(x, [s * c for s in sizes], 1)
            inputs = [
                parts[p[0]] if len(p) == 1 else torch.cat([parts[i] for i in p], 1) for p in pieces
            ]
        width = 0 if scale is None else scale.numel() // self.n
        outs = []
        for r, xr in zip(ranges, inputs, strict=True):
            s = None if scale is None else scale[r.start * width : r.stop * width]
            outs.append(self.run_nodes(xr, r, s))
        return torch.cat(outs, 1)

    def _plan(self, spans: tuple[Span, ...]) -> tuple[list[int], list[list[int]], list[Wiring]]:
        plan = self._plans.get(spans)
        if plan is None:
            plan = self._plans[spans] = range_inputs(self.wiring, spans)
        return plan

    def _node_ranges(self, spans: tuple[Span, ...]) -> list[NodeRange]:
        """The ranges of this forward: kept ones (prepared, eval, no gradients) or new ones."""
        prepared = self._prepared
        if prepared is not None and torch.is_grad_enabled():
            prepared.spans, prepared.ranges = None, []  # gradients: weights may change next
        usable = prepared is not None and not self.training and not torch.is_grad_enabled()
        if usable and not tracing():
            assert prepared is not None
            if prepared.spans != spans:
                prepared.spans, prepared.ranges = spans, self._make_ranges(spans)
            return prepared.ranges
        return self._make_ranges(spans)

    def _make_ranges(self, spans: tuple[Span, ...]) -> list[NodeRange]:
        if len(spans) == 1:
            return [NodeRange(0, self.n, self.wiring)]
        wirings = self._plan(spans)[2]
        pieces = split_rows(self, spans)
        return [NodeRange(a, b, w, p) for (a, b), w, p in zip(spans, wirings, pieces, strict=True)]

    # ------------------------------------------------------------------ preparation
    def prepare(self) -> None:
        """Keep derived weights for inference (module doc); `HierNet.prepare_inference` calls it."""
        self._prepared = Prepared()

    @property
    def prepared(self) -> bool:
        return self._prepared is not None

    def train(self, mode: bool = True) -> Level:
        if mode:  # eval() on an eval model keeps the preparation; training ends it
            self._prepared = None
        return super().train(mode)

    def _drop_derived(self) -> None:
        if self._prepared is not None:
            self._prepared = Prepared()

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._drop_derived()
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        self._drop_derived()
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles start unprepared (their weights may be changed on their own)."""
        state = super().__getstate__()
        state["_prepared"] = None
        return state

    # ------------------------------------------------------------------ attention
    @property
    def out_channels(self) -> int:
        return self.specs[-1].cout

    @property
    def scales(self) -> tuple[float, ...] | None:
        """Per-node attention scales of this level, or None (no attention: no multiply at all)."""
        return self._scales

    def set_scales(self, scales: Sequence[float] | None) -> None:
        if scales is not None:
            scales = tuple(float(s) for s in scales)
            if len(scales) != self.n:
                raise ValueError(f"{len(scales)} scales for {self.n} nodes")
            if all(s == 1.0 for s in scales):
                scales = None
        self._scales = scales
        self._scale_cache = {}

    def _scale_tensor(self, device: torch.device) -> torch.Tensor | None:
        if self._scales is None:
            return None
        key = str(device)
        t = self._scale_cache.get(key)
        if t is None:
            from nhlcli.model.kinds import get_kind

            # node i's channels at the kind's attention point all get scale[i]
            width = get_kind(self.specs[0].kind).attention_channels(self.specs[0])
            per_channel = [s for s in self._scales for _ in range(width)]
            t = torch.tensor(per_channel, dtype=torch.float32, device=device)
            self._scale_cache[key] = t
        return t
