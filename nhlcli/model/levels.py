"""Grouped levels: all nodes of one tree level run as ONE computation (the shared machinery).

This module holds what every block kind's grouped level uses (`Wiring`, `parent_convs`,
`LevelScales`) and the ResNet kinds' level (`GroupedLevel`, `GroupedConv`, `GroupedBatchNorm`);
the kinds' grouped blocks live in `nhlcli/model/kinds/` (ConvNeXt: `ConvNeXtLevel`).

A level with n nodes whose blocks have c output channels is one tensor of n·c channels (node i owns
channels [i·c, (i+1)·c)). Every per-node parameter is stored with a leading node dimension:

* conv weights ``(n, out, in, kh, kw)``, run as one convolution with ``groups=n``;
* batch norm ``weight``/``bias``/``running_mean``/``running_var`` as ``(n, c)``, run as one
  per-channel batch norm over n·c channels (identical to n separate batch norms, in train and eval
  mode).

So a cutout is ``param[idx]`` and the parameter count equals that of separate branches exactly.

How a level reads its input (`Wiring`): node i reads slice ``parents[i]`` of the previous level's
output (the trunk's output for level 1: one slice shared by all nodes). The 1x1 convolutions that
read the input (conv1 and the projection shortcut of a node's first block) never replicate a parent
slice per child: parents are bucketed by their number of children f, and each bucket runs one
grouped convolution with ``groups = #parents`` and ``f·out`` output channels per group (the
children's weights side by side). When all nodes share one input (level 1), that is a single dense
convolution ``cin -> n·out``; when every node has its own parent slice in order (a chain level), it
is a plain grouped convolution. Only an identity shortcut (a first block without projection, which
no preset uses) gathers the parent slices.

On the CPU a level runs in chunks of nodes (`GroupedLevel.chunks`, `CPU_CHUNK_BYTES`): the same
grouped computation per chunk, with cache-sized tensors; elsewhere the whole level runs at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nhlcli.model.presets import BlockSpec

# On the CPU, a level runs in chunks of nodes whose largest intermediate is about this size (see
# `GroupedLevel.chunks`); None runs every level at once everywhere.
CPU_CHUNK_BYTES: int | None = 8 << 20


class Wiring:
    """Which slice of the input feeds each node of a level.

    parents[i] is the input slice of node i (0..n_inputs-1); ``n_inputs`` is the number of slices
    in the input tensor (1 for the trunk's output). Index tensors are built lazily per device, so
    the wiring works for models on any device (and for meta-device models, which are never run).
    """

    def __init__(self, parents: Sequence[int], n_inputs: int) -> None:
        self.parents = tuple(int(p) for p in parents)
        self.n_inputs = int(n_inputs)
        self.n = len(self.parents)
        if any(not 0 <= p < self.n_inputs for p in self.parents):
            raise ValueError("parent index out of range")
        self.aligned = self.n == self.n_inputs and self.parents == tuple(range(self.n))
        children: dict[int, list[int]] = {}
        for i, p in enumerate(self.parents):
            children.setdefault(p, []).append(i)
        by_fanout: dict[int, list[int]] = {}
        for p in sorted(children):
            by_fanout.setdefault(len(children[p]), []).append(p)
        # buckets: (parent slices, their children in bucket order, fanout)
        self.buckets: list[tuple[tuple[int, ...], tuple[int, ...], int]] = []
        order: list[int] = []
        for f in sorted(by_fanout):
            ps = tuple(by_fanout[f])
            kids = tuple(c for p in ps for c in children[p])
            self.buckets.append((ps, kids, f))
            order.extend(kids)
        self._order = tuple(order)  # bucket output order -> node index
        self.in_order = self._order == tuple(range(self.n))
        self._cache: dict[tuple[str, str], torch.Tensor] = {}

    def index(self, key: str, device: torch.device) -> torch.Tensor:
        """A cached index tensor: 'parents', 'bucket_parents:i' or 'bucket_kids:i'."""
        ck = (key, str(device))
        t = self._cache.get(ck)
        if t is None:
            if key == "parents":
                values: Sequence[int] = self.parents
            else:
                what, i = key.split(":")
                ps, kids, _ = self.buckets[int(i)]
                values = ps if what == "bucket_parents" else kids
            # made outside inference mode even when first needed there: a cached inference
            # tensor cannot be saved for backward when the model is trained afterwards
            with torch.inference_mode(False):
                t = torch.tensor(values, dtype=torch.long, device=device)
            self._cache[ck] = t
        return t

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """(N, n_inputs·c, H, W) -> (N, n·c, H, W): each node's parent slice (copied)."""
        if self.aligned:
            return x
        n_, ch, h, w = x.shape
        c = ch // self.n_inputs
        v = x.reshape(n_, self.n_inputs, c, h, w)
        out = v.index_select(1, self.index("parents", x.device))
        return out.reshape(n_, self.n * c, h, w)

    def __deepcopy__(self, memo: dict) -> Wiring:
        return Wiring(self.parents, self.n_inputs)

    def __getstate__(self) -> dict:
        return {"parents": self.parents, "n_inputs": self.n_inputs}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["parents"], state["n_inputs"])  # type: ignore[misc]


class GroupedConv(nn.Module):
    """n convolutions of the same shape, weight (n, out, in, k, k), run as one grouped conv."""

    def __init__(self, n: int, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.n, self.cin, self.cout, self.kernel, self.stride = n, cin, cout, kernel, stride
        self.padding = kernel // 2
        self.weight = nn.Parameter(torch.empty(n, cout, cin, kernel, kernel))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torchvision's ResNet init: kaiming normal, fan_out (per node: out·k·k), ReLU gain
        std = math.sqrt(2.0 / (self.cout * self.kernel * self.kernel))
        nn.init.normal_(self.weight, 0.0, std)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """Apply `fn` (`Module.to`, `.cuda()`, ...) to the weight seen as one 4-D conv weight.

        `Module.to(memory_format=torch.channels_last)` only accepts 4-D conv weights; this converts
        (n·out, in, kh, kw) and views the result back as (n, out, in, kh, kw), keeping the Parameter
        object (optimizers keep their references).
        """
        p = self._parameters["weight"]
        assert p is not None
        flat_shape = (self.n * self.cout, self.cin, self.kernel, self.kernel)
        flat = nn.Parameter(p.data.reshape(flat_shape), requires_grad=p.requires_grad)
        if p.grad is not None:
            flat.grad = p.grad.reshape(flat_shape)
        self._parameters["weight"] = flat
        try:
            super()._apply(fn, recurse)
            new = self._parameters["weight"]
            assert new is not None
            p.data = new.data.view(p.shape)
            if new.grad is not None:
                p.grad = new.grad.view(p.shape)
        finally:
            self._parameters["weight"] = p
        return self

    def node_weight(self, span: tuple[int, int] | None = None) -> torch.Tensor:
        """The weights of nodes [a, b) (all nodes when span is None): a view."""
        return self.weight if span is None else self.weight[span[0] : span[1]]

    def forward(self, x: torch.Tensor, span: tuple[int, int] | None = None) -> torch.Tensor:
        """x holds the nodes' inputs side by side: (N, n·in, H, W) -> (N, n·out, H', W').

        span=(a, b): only nodes a..b-1 (x then holds their b-a inputs).
        """
        w = self.node_weight(span)
        nodes = w.shape[0]
        w = w.reshape(nodes * self.cout, self.cin, self.kernel, self.kernel)
        return F.conv2d(x, w, None, self.stride, self.padding, 1, nodes)

    def forward_from_parents(self, x: torch.Tensor, wiring: Wiring) -> torch.Tensor:
        """A 1x1 conv of each node's parent slice, without replicating slices (see module doc)."""
        return read_parents(x, wiring, [self])[0]

    def extra_repr(self) -> str:
        k = self.kernel
        return f"nodes={self.n}, {self.cin}->{self.cout}, kernel={k}x{k}, stride={self.stride}"


def read_parents(
    x: torch.Tensor,
    wiring: Wiring,
    convs: Sequence[GroupedConv],
    span: tuple[int, int] | None = None,
) -> list[torch.Tensor]:
    """Several 1x1 convs (same input, e.g. conv1 and the projection) of each node's parent slice.

    With span=(a, b) the wiring describes nodes a..b-1 only (see `GroupedLevel`'s chunks).
    """
    if wiring.aligned:
        return [conv(x, span) for conv in convs]
    assert all(conv.kernel == 1 for conv in convs), "parent reads are 1x1 convolutions"
    return parent_convs(x, wiring, [c.node_weight(span) for c in convs], [c.stride for c in convs])


def _bucket_rows(t: torch.Tensor, wiring: Wiring, b: int) -> torch.Tensor:
    """Rows (leading node dimension) of bucket b's nodes, in bucket order (a view if a run)."""
    kids = wiring.buckets[b][1]
    if kids == tuple(range(kids[0], kids[0] + len(kids))):
        return t[kids[0] : kids[0] + len(kids)]
    return t.index_select(0, wiring.index(f"bucket_kids:{b}", t.device))


def parent_convs(
    x: torch.Tensor,
    wiring: Wiring,
    weights: Sequence[torch.Tensor],
    strides: Sequence[int],
    biases: Sequence[torch.Tensor | None] | None = None,
) -> list[torch.Tensor]:
    """Unpadded convolutions of each node's parent slice, without replicating parent slices.

    weights[j]: (n, out, in, kh, kw) per node, biases[j]: (n, out) or None. Per fanout bucket, the
    parent slices are gathered once (not at all when the bucket holds every input slice, or a run
    of them) and each conv runs with groups = #parents and the children's weights side by side;
    the outputs are written to their nodes' positions (no copy when there is one bucket in node
    order).
    """
    n_, _, h, w = x.shape
    cin = weights[0].shape[2]
    bias_list = list(biases) if biases is not None else [None] * len(weights)
    single = len(wiring.buckets) == 1 and wiring.in_order
    outs: list[torch.Tensor] = []
    if not single:
        for wt, s in zip(weights, strides, strict=True):
            ho, wo = (h - wt.shape[3]) // s + 1, (w - wt.shape[4]) // s + 1
            outs.append(x.new_empty(n_, wiring.n, wt.shape[1], ho, wo))
    for b, (ps, kids, _) in enumerate(wiring.buckets):
        m = len(ps)
        if m == wiring.n_inputs:  # every input slice, in order
            xb = x
        elif ps == tuple(range(ps[0], ps[0] + m)):  # a run of consecutive input slices
            xb = x.narrow(1, ps[0] * cin, m * cin)
        else:
            v = x.reshape(n_, wiring.n_inputs, cin, h, w)
            idx = wiring.index(f"bucket_parents:{b}", x.device)
            xb = v.index_select(1, idx).reshape(n_, m * cin, h, w)
        for j, (wt, s, bias) in enumerate(zip(weights, strides, bias_list, strict=True)):
            wb = _bucket_rows(wt, wiring, b)
            wb = wb.reshape(len(kids) * wt.shape[1], *wt.shape[2:])
            bb = None if bias is None else _bucket_rows(bias, wiring, b).reshape(-1)
            yb = F.conv2d(xb, wb, bb, s, 0, 1, m)
            if single:
                outs.append(yb)
            else:
                yb = yb.reshape(n_, len(kids), wt.shape[1], *yb.shape[-2:])
                outs[j].index_copy_(1, wiring.index(f"bucket_kids:{b}", x.device), yb)
    if single:
        return outs
    return [o.view(n_, -1, *o.shape[-2:]) for o in outs]


class GroupedBatchNorm(nn.Module):
    """n BatchNorm2d(c) side by side: per-channel batch norm over n·c channels (momentum 0.1)."""

    def __init__(self, n: int, c: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.n, self.c, self.eps, self.momentum = n, c, eps, momentum
        self.weight = nn.Parameter(torch.ones(n, c))
        self.bias = nn.Parameter(torch.zeros(n, c))
        self.register_buffer("running_mean", torch.zeros(n, c))
        self.register_buffer("running_var", torch.ones(n, c))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_batches_tracked: torch.Tensor

    def forward(self, x: torch.Tensor, span: tuple[int, int] | None = None) -> torch.Tensor:
        """Batch norm of all nodes, or of nodes [a, b) (their statistics are updated in place)."""
        a, b = span if span is not None else (0, self.n)
        if self.training and a == 0:  # once per forward of the level, also when run in chunks
            self.num_batches_tracked.add_(1)
        return F.batch_norm(
            x,
            self.running_mean[a:b].view(-1),
            self.running_var[a:b].view(-1),
            self.weight[a:b].reshape(-1),
            self.bias[a:b].reshape(-1),
            self.training,
            self.momentum,
            self.eps,
        )

    def extra_repr(self) -> str:
        return f"nodes={self.n}, channels={self.c}"


class LevelScales(nn.Module):
    """Per-node attention scales of a level (any block kind): `set_scales`, `scales`.

    Subclasses set ``specs``, ``n`` and call `_init_scales`; `_scale_tensor` gives one factor per
    channel the kind's attention point has (``attention_channels`` per node).
    """

    specs: tuple[BlockSpec, ...]
    n: int

    def _init_scales(self) -> None:
        self._scales: tuple[float, ...] | None = None
        self._scale_cache: dict[str, torch.Tensor] = {}

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


class GroupedLevel(LevelScales):
    """All nodes of one ResNet-family level: each node is the same sequence of blocks."""

    def __init__(self, blocks: Sequence[BlockSpec], wiring: Wiring) -> None:
        from nhlcli.model.kinds import get_kind

        super().__init__()
        self.specs = tuple(blocks)
        self.wiring = wiring
        self.n = wiring.n
        self.blocks = nn.ModuleList(
            get_kind(spec.kind).grouped_block(spec, self.n, wiring if i == 0 else None)
            for i, spec in enumerate(self.specs)
        )
        self._init_scales()
        self._wiring_cache: dict[tuple[int, int], Wiring] = {}
        self.cpu_chunk_bytes: int | None = CPU_CHUNK_BYTES

    def chunks(self, x: torch.Tensor) -> list[tuple[int, int]]:
        """Node ranges run one after the other: the whole level at once except on the CPU.

        On the CPU a level is memory-bound when its n·c-channel tensors are far larger than the
        caches, so nodes run in chunks whose largest intermediate tensor is about
        `CPU_CHUNK_BYTES` (still one grouped computation per chunk of nodes).
        """
        if x.device.type != "cpu" or self.cpu_chunk_bytes is None:
            return [(0, self.n)]
        n_, _, h, w = x.shape
        per_node = 0
        for spec in self.specs:
            ho, wo = (h - 1) // spec.stride + 1, (w - 1) // spec.stride + 1
            per_node = max(per_node, spec.mid * h * w, max(spec.mid, spec.cout) * ho * wo)
            h, w = ho, wo
        per_node *= n_ * x.element_size()
        size = max(1, self.cpu_chunk_bytes // max(per_node, 1))
        return [(a, min(a + size, self.n)) for a in range(0, self.n, size)]

    def _chunk_wiring(self, a: int, b: int) -> Wiring:
        key = (a, b)
        w = self._wiring_cache.get(key)
        if w is None:
            w = Wiring(self.wiring.parents[a:b], self.wiring.n_inputs)
            self._wiring_cache[key] = w
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self._scale_tensor(x.device)
        spans = self.chunks(x)
        if len(spans) == 1:
            for i, block in enumerate(self.blocks):
                x = block(x, scale if i == 0 else None)
            return x
        width = 0 if scale is None else scale.numel() // self.n
        outs = []
        for a, b in spans:
            h = x
            for i, block in enumerate(self.blocks):
                if i == 0:
                    s = None if scale is None else scale[a * width : b * width]
                    h = block(h, s, span=(a, b), wiring=self._chunk_wiring(a, b))
                else:
                    h = block(h, None, span=(a, b))
            outs.append(h)
        return torch.cat(outs, 1)

    def extra_repr(self) -> str:
        return f"nodes={self.n}, inputs={self.wiring.n_inputs}"
