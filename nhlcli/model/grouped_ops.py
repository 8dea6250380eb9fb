"""Grouped ops: the math of n same-shaped nodes run as ONE computation (no execution policy).

A level with n nodes whose blocks have c output channels is one tensor of n·c channels (node i owns
channels [i·c, (i+1)·c)). Every per-node parameter is stored with a leading node dimension:

* conv weights ``(n, out, in, kh, kw)``, run as one convolution with ``groups=n`` (`GroupedConv`);
* batch norm ``weight``/``bias``/``running_mean``/``running_var`` as ``(n, c)``, run as one
  per-channel batch norm over n·c channels (`GroupedBatchNorm`; identical to n separate batch
  norms, in train and eval mode).

So a cutout is ``param[idx]`` and the parameter count equals that of separate branches exactly.

How a level reads its input (`Wiring`): node i reads slice ``parents[i]`` of the previous level's
output (the trunk's output for level 1: one slice shared by all nodes). The 1x1 convolutions that
read the input (`read_parents`: conv1 and the projection shortcut of a node's first block, a
ConvNeXt node's downsample) never replicate a parent slice per child: parents are bucketed by
their number of children f, and each bucket runs one grouped convolution with ``groups =
#parents`` and ``f·out`` output channels per group (the children's weights side by side). When all
nodes share one input (level 1), that is a single dense convolution ``cin -> n·out``; when every
node has its own parent slice in order (a chain level), it is a plain grouped convolution.

Every op takes the nodes it computes as a `NodeRange`: nodes [start, stop) of the level, the wiring
of their input, the rows of each per-node parameter for them and the weights derived from those
rows (bucket order, folded norms), made once per range. Which ranges a level runs, and in which
groups of images, is the level's execution strategy (`nhlcli.model.execution`), not this module's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

T = TypeVar("T")


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
        # every bucket's parent slices, bucket after bucket (each parent is in one bucket)
        self._bucket_inputs = tuple(p for ps, _, _ in self.buckets for p in ps)
        bi = self._bucket_inputs
        # (start, count) when they are a run of consecutive input slices (no gather needed)
        self.inputs_run = (bi[0], len(bi)) if bi == tuple(range(bi[0], bi[0] + len(bi))) else None
        # made at once (a graph traced later keeps them as constants, the same in every run of
        # the tracer) and outside inference mode (a cached inference tensor cannot be saved for
        # backward when the model is trained afterwards)
        with torch.inference_mode(False), torch.device("cpu"):
            self._cache: dict[tuple[str, str], torch.Tensor] = {
                (key, "cpu"): torch.tensor(values, dtype=torch.long)
                for key, values in (
                    ("parents", self.parents),
                    ("order", self._order),
                    ("bucket_inputs", self._bucket_inputs),
                )
            }

    def index(self, key: str, device: torch.device) -> torch.Tensor:
        """An index tensor: 'parents', 'order' (bucket order -> node) or 'bucket_inputs' (every
        bucket's parent slices in bucket order), copied to other devices on first use."""
        t = self._cache.get((key, str(device)))
        if t is None:
            with torch.inference_mode(False):
                t = self._cache[(key, str(device))] = self._cache[(key, "cpu")].to(device)
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


class NodeRange:
    """Nodes [start, stop) of a level, computed as one grouped computation.

    ``wiring`` says how they read the input they are given (relative to it; None: the input holds
    exactly their inputs, in order). ``pieces`` maps (module, parameter name) to that parameter's
    rows for these nodes, when a level run in several ranges split each parameter ONCE for all of
    them (`split_rows`): per-range slices would each add a zero gradient of the whole parameter in
    backward (quadratic in the ranges), one split adds one concatenation. `derived` keeps weights
    made from the rows (bucket order, folded norms) for as long as the range lives: one forward,
    or, for a prepared level, until the preparation is dropped (`nhlcli.model.execution`).
    """

    def __init__(
        self,
        start: int,
        stop: int,
        wiring: Wiring | None,
        pieces: dict[tuple[nn.Module, str], torch.Tensor] | None = None,
    ) -> None:
        self.start, self.stop, self.wiring = start, stop, wiring
        self.pieces = pieces if pieces is not None else {}
        self._derived: dict[Any, Any] = {}

    def rows(self, module: nn.Module, name: str) -> torch.Tensor:
        """Rows [start, stop) (leading node dimension) of `module`'s parameter `name`."""
        piece = self.pieces.get((module, name))
        if piece is not None:
            return piece
        p = getattr(module, name)
        if self.start == 0 and self.stop == module.n:  # all nodes (GroupedConv, GroupedBatchNorm)
            return p
        return p[self.start : self.stop]

    def derived(self, key: Any, make: Callable[[], T]) -> T:
        """`make()` the first time `key` is asked for, then the same result."""
        if key not in self._derived:
            self._derived[key] = make()
        return self._derived[key]  # type: ignore[no-any-return]


def split_rows(
    module: nn.Module, spans: Sequence[tuple[int, int]]
) -> list[dict[tuple[nn.Module, str], torch.Tensor]]:
    """Every parameter of `module` and its submodules split ONCE into the node ranges `spans`:
    one dict of pieces per range (`NodeRange.pieces`). Every parameter has a leading node
    dimension; one `torch.split` each keeps backward linear in the ranges."""
    sizes = [b - a for a, b in spans]
    out: list[dict[tuple[nn.Module, str], torch.Tensor]] = [{} for _ in spans]
    for m in module.modules():
        for name, p in m.named_parameters(recurse=False):
            for d, piece in zip(out, torch.split(p, sizes), strict=True):
                d[(m, name)] = piece
    return out


def range_inputs(
    wiring: Wiring, spans: Sequence[tuple[int, int]]
) -> tuple[list[int], list[list[int]], list[Wiring]]:
    """How node ranges read the input: ONE split of it, each range's pieces and wiring.

    The input's slices are split once at every range's parent range [lo, hi); a range reads the
    pieces of its parent range (concatenated only when another range's parent range ends inside
    it) through a wiring relative to lo. Backward then concatenates the pieces' gradients instead
    of adding a whole-input zero gradient per range. A level-1 input (one slice shared by all
    nodes) is read whole: sizes is then [].
    """
    parents, n_in = wiring.parents, wiring.n_inputs
    if n_in == 1:
        return [], [[] for _ in spans], [Wiring(parents[a:b], 1) for a, b in spans]
    ranges = [(min(parents[a:b]), max(parents[a:b]) + 1) for a, b in spans]
    bounds = sorted({0, n_in, *(e for r in ranges for e in r)})
    first = {lo: i for i, lo in enumerate(bounds)}
    sizes = [hi - lo for lo, hi in itertools.pairwise(bounds)]
    pieces = [list(range(first[lo], first[hi])) for lo, hi in ranges]
    wirings = [
        Wiring([p - lo for p in parents[a:b]], hi - lo)
        for (a, b), (lo, hi) in zip(spans, ranges, strict=True)
    ]
    return sizes, pieces, wirings


def apply_as_conv_weight(module: nn.Module, apply: Any, fn: Any, recurse: bool) -> nn.Module:
    """`Module._apply` for a module whose ``weight`` is a per-node conv weight (n, out, in, kh, kw).

    `Module.to(memory_format=torch.channels_last)` only accepts 4-D conv weights: the weight is
    handed to `apply` (the module's inherited `_apply`) as one 4-D conv weight (n·out, in, kh, kw)
    and the result viewed back, keeping the Parameter object (optimizers keep their references).
    Every level kind with per-node conv weights uses it (`GroupedConv`, ConvNeXt's `NodeParams`).
    """
    p = module._parameters["weight"]
    if p is None or p.dim() != 5:
        return apply(fn, recurse)  # type: ignore[no-any-return]
    flat_shape = (p.shape[0] * p.shape[1], *p.shape[2:])
    flat = nn.Parameter(p.data.reshape(flat_shape), requires_grad=p.requires_grad)
    if p.grad is not None:
        flat.grad = p.grad.reshape(flat_shape)
    module._parameters["weight"] = flat
    try:
        apply(fn, recurse)
        new = module._parameters["weight"]
        assert new is not None
        p.data = new.data.view(p.shape)
        if new.grad is not None:
            p.grad = new.grad.view(p.shape)
    finally:
        module._parameters["weight"] = p
    return module


class GroupedConv(nn.Module):
    """n convolutions of the same shape, weight (n, out, in, k, k), run as one grouped conv."""

    def __init__(self, n: int, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.n, self.cin, self.cout, self.kernel, self.stride = n, cin, cout, kernel, stride
        self.padding = kernel // 2
        self.weight = nn.Parameter(torch.empty(n, cout, cin, kernel, kernel))
        # (n, out) in fused models only (a folded batch norm, `nhlcli.model.fuse`)
        self.bias: nn.Parameter | None
        self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torchvision's ResNet init: kaiming normal, fan_out (per node: out·k·k), ReLU gain
        std = math.sqrt(2.0 / (self.cout * self.kernel * self.kernel))
        nn.init.normal_(self.weight, 0.0, std)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        return apply_as_conv_weight(self, super()._apply, fn, recurse)

    def forward(self, x: torch.Tensor, nodes: NodeRange | None = None) -> torch.Tensor:
        """x holds the nodes' inputs side by side: (N, n·in, H, W) -> (N, n·out, H', W').

        nodes: only those nodes (x then holds their inputs); None: all nodes.
        """
        w = self.weight if nodes is None else nodes.rows(self, "weight")
        count = w.shape[0]
        w = w.reshape(count * self.cout, self.cin, self.kernel, self.kernel)
        b: torch.Tensor | None = self.bias
        if b is not None:
            b = (b if nodes is None else nodes.rows(self, "bias")).reshape(-1)
        return F.conv2d(x, w, b, self.stride, self.padding, 1, count)

    def forward_from_parents(self, x: torch.Tensor, wiring: Wiring) -> torch.Tensor:
        """A 1x1 conv of each node's parent slice, without replicating slices (see module doc)."""
        return read_parents(x, NodeRange(0, self.n, wiring), [self])[0]

    def extra_repr(self) -> str:
        k = self.kernel
        return f"nodes={self.n}, {self.cin}->{self.cout}, kernel={k}x{k}, stride={self.stride}"


def read_parents(
    x: torch.Tensor, nodes: NodeRange, convs: Sequence[GroupedConv]
) -> list[torch.Tensor]:
    """Several 1x1 convs (same input, e.g. conv1 and the projection) of each node's parent slice,
    read through ``nodes.wiring`` (None or aligned: x holds the nodes' inputs in order)."""
    wiring = nodes.wiring
    if wiring is None or wiring.aligned:
        return [conv(x, nodes) for conv in convs]
    assert all(conv.kernel == 1 for conv in convs), "parent reads are 1x1 convolutions"

    def buckets(conv: GroupedConv, name: str) -> Sequence[torch.Tensor]:
        return nodes.derived((conv, name), lambda: bucket_rows(wiring, nodes.rows(conv, name)))

    weights = [buckets(c, "weight") for c in convs]
    biases = [None if c.bias is None else buckets(c, "bias") for c in convs]
    return parent_convs(x, wiring, weights, [c.stride for c in convs], biases)


def bucket_rows(wiring: Wiring, t: torch.Tensor) -> Sequence[torch.Tensor]:
    """Per-node rows of `t` (leading node dimension) put in bucket order and split per fanout
    bucket (`parent_convs`): one reorder (none when the nodes already are in bucket order) and
    one split, so backward stays linear in the buckets."""
    if not wiring.in_order:
        t = t.index_select(0, wiring.index("order", t.device))
    sizes = [len(kids) for _, kids, _ in wiring.buckets]
    return torch.split(t, sizes) if len(sizes) > 1 else (t,)


def parent_convs(
    x: torch.Tensor,
    wiring: Wiring,
    weights: Sequence[Sequence[torch.Tensor]],
    strides: Sequence[int],
    biases: Sequence[Sequence[torch.Tensor] | None] | None = None,
) -> list[torch.Tensor]:
    """Unpadded convolutions of each node's parent slice, without replicating parent slices.

    weights[j]: conv j's per-node weights (n, out, in, kh, kw) in buckets (`bucket_rows`),
    biases[j]: its (n, out) biases in buckets, or None. The input slices are put in bucket order
    once (no copy when they already are) and split into the buckets; each bucket's conv runs with
    groups = #parents and the children's weights side by side; the outputs are written to their
    nodes' positions (no copy when the buckets are in node order).
    """
    n_, _, h, w = x.shape
    cin = weights[0][0].shape[2]
    bias_list = list(biases) if biases is not None else [None] * len(weights)
    m_sizes = [len(ps) for ps, _, _ in wiring.buckets]
    run = wiring.inputs_run
    if run is not None and run[1] == wiring.n_inputs:
        xo = x
    elif run is not None:
        xo = x.narrow(1, run[0] * cin, run[1] * cin)
    else:
        v = x.reshape(n_, wiring.n_inputs, cin, h, w)
        idx = wiring.index("bucket_inputs", x.device)
        xo = v.index_select(1, idx).reshape(n_, sum(m_sizes) * cin, h, w)
    xbs = torch.split(xo, [m * cin for m in m_sizes], 1) if len(m_sizes) > 1 else (xo,)

    outs: list[torch.Tensor] = []
    for wbs, s, bbs in zip(weights, strides, bias_list, strict=True):
        cout = wbs[0].shape[1]
        ys = []
        for i, (xb, wb, m) in enumerate(zip(xbs, wbs, m_sizes, strict=True)):
            bb = None if bbs is None else bbs[i].reshape(-1)
            ys.append(F.conv2d(xb, wb.reshape(-1, *wb.shape[2:]), bb, s, 0, 1, m))
        y = ys[0] if len(ys) == 1 else torch.cat(ys, 1)
        if not wiring.in_order:
            y5 = y.view(n_, wiring.n, cout, *y.shape[-2:])
            out = torch.empty_like(y5)
            out.index_copy_(1, wiring.index("order", x.device), y5)
            y = out.view(n_, -1, *y.shape[-2:])
        outs.append(y)
    return outs


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

    def forward(self, x: torch.Tensor, nodes: NodeRange | None = None) -> torch.Tensor:
        """Batch norm of all nodes, or of `nodes` (their statistics are updated in place)."""
        a, b = (0, self.n) if nodes is None else (nodes.start, nodes.stop)
        if self.training and a == 0:  # once per forward of the level, also when run in ranges
            self.num_batches_tracked.add_(1)
        weight = self.weight if nodes is None else nodes.rows(self, "weight")
        bias = self.bias if nodes is None else nodes.rows(self, "bias")
        return F.batch_norm(
            x,
            self.running_mean[a:b].view(-1),
            self.running_var[a:b].view(-1),
            weight.reshape(-1),
            bias.reshape(-1),
            self.training,
            self.momentum,
            self.eps,
        )

    def extra_repr(self) -> str:
        return f"nodes={self.n}, channels={self.c}"
