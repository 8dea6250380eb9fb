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
grouped computation per chunk, with cache-sized tensors; elsewhere the whole level runs at once. In
eval mode (batch norm on running statistics, so every image is computed alone) a large CPU batch
also runs in groups of images (`image_spans`), so that the node chunks stay wide.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from nhlcli.model.presets import BlockSpec

# On the CPU, a level runs in chunks of nodes whose largest intermediate is about this size (see
# `GroupedLevel.chunks`); None runs every level at once everywhere.
CPU_CHUNK_BYTES: int | None = 8 << 20
# Image groups (`image_spans`) are made small enough that a node chunk holds this many nodes.
MIN_CHUNK_NODES = 64


T = TypeVar("T")


class PreparedMemo:
    """Weights derived from parameters (`prepared`), keyed by what they were made from.

    A key holds each source tensor's storage address, shape, strides and version counter, so an
    in-place change (an optimizer step, `load_state_dict`) or a moved parameter makes a new
    entry, and the sources are kept with the entry, so their memory is not reused while it lives.
    `reuse_prepared` drops the entries a forward did not use. Copies and pickles start empty.
    """

    def __init__(self) -> None:
        self.entries: dict[tuple, tuple[tuple, object]] = {}
        self.used: set[tuple] = set()

    def clear(self) -> None:
        self.entries, self.used = {}, set()

    def __deepcopy__(self, memo: dict) -> PreparedMemo:
        return PreparedMemo()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()  # type: ignore[misc]


_PREPARED: ContextVar[PreparedMemo | None] = ContextVar("nhl_prepared", default=None)


@contextmanager
def reuse_prepared(memo: PreparedMemo | None = None) -> Iterator[None]:
    """Inside, weights derived from parameters (`prepared`) are made once and then reused.

    A level derives weights from its parameters on every forward (fanout-bucket order, folded
    layer norms): copies as large as its weights. Profiled on the CPU: n3hl k = 1000 at batch 1
    spent 39 % of its forward in `index_select` (the bucket order), as much as in its
    convolutions; ConvNeXt's 1000-node level spent 42 % re-folding and re-ordering its 131 MB
    downsample weight for each group of images. Inside this context they are made once: for all
    image groups of one forward (one autograd node, so backward stays linear in the groups) with
    a fresh memo, and across forwards with a level's own memo (without gradients only).
    """
    memo = memo if memo is not None else PreparedMemo()
    token = _PREPARED.set(memo)
    try:
        yield
    finally:
        _PREPARED.reset(token)
        memo.entries = {k: v for k, v in memo.entries.items() if k in memo.used}
        memo.used = set()


def _fingerprint(t: torch.Tensor | None) -> tuple:
    if t is None:
        return (None,)
    # an inference tensor has no version counter; it cannot be changed outside inference mode
    version = -1 if t.is_inference() else t._version
    return (t.data_ptr(), tuple(t.shape), t.stride(), t.dtype, t.device, version)


def prepared(tag: str, sources: Sequence[torch.Tensor | None], make: Callable[[], T]) -> T:
    """`make()`, or inside `reuse_prepared` its result for the same `tag` and source tensors."""
    memo = _PREPARED.get()
    if memo is None:
        return make()
    key = (tag, *(_fingerprint(t) for t in sources))
    hit = memo.entries.get(key)
    if hit is None:  # the sources are kept with the result, so their memory stays theirs
        hit = memo.entries[key] = (tuple(sources), make())
    memo.used.add(key)
    return hit[1]  # type: ignore[return-value]


def clear_prepared(model: nn.Module) -> None:
    """Forget every level's weights derived for inference (after changing weights via ``.data``)."""
    for m in model.modules():
        if isinstance(m, LevelScales):
            m.prepared_memo.clear()


def prepared_scope(memo: PreparedMemo, groups: int) -> AbstractContextManager[None]:
    """How a level reuses derived weights: across forwards without gradients (its own `memo`),
    within one forward when it runs in several image groups, else not at all. Never while
    tracing: traced graphs see fake tensors, which have no storage to key on."""
    if tracing():
        return nullcontext()
    if not torch.is_grad_enabled():
        return reuse_prepared(memo)
    return reuse_prepared() if groups > 1 else nullcontext()


def tracing() -> bool:
    """True while the model is traced or exported (TorchScript, ONNX, torch.compile).

    Image groups split the batch at fixed positions, which a traced graph would keep for every
    batch size; a traced model therefore runs its batch whole.
    """
    return bool(
        torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
    )


def image_spans(
    n_images: int, bytes_per_image: int, chunk_bytes: int | None
) -> list[tuple[int, int]]:
    """Batch ranges [a, b) run one after the other so that each holds about `chunk_bytes`.

    `bytes_per_image` is what one image needs of the tensors that should stay cache-sized; a
    batch that fits (or `chunk_bytes` None) is one range. Running image groups one after the
    other is exact wherever images are computed independently (batch norm in eval mode, layer
    norms, GRN); the batch's first dimension is outermost, so each group is a contiguous view.

    Why (`torch.profiler`, n3hl k = 1000 leaf level, eval, batch 32, one CPU thread): with nodes
    chunked alone, a batch of 32 leaves 10 nodes per chunk; 100 chunks of strided channel slices
    spent 32 % of the time in `aten::cat`, 11 % in `copy_`, 11 % in `index_select`, and grouped
    1x1 convolutions ran at about 3 GMAC/s (36.6 s for the level against 3.6 s at batch 8).
    """
    if chunk_bytes is None or n_images <= 1 or tracing():
        return [(0, n_images)]
    size = max(1, chunk_bytes // max(bytes_per_image, 1))
    if size >= n_images:
        return [(0, n_images)]
    return [(a, min(a + size, n_images)) for a in range(0, n_images, size)]


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
        self._cache: dict[tuple[str, str], torch.Tensor] = {}

    def index(self, key: str, device: torch.device) -> torch.Tensor:
        """A cached index tensor: 'parents', 'order' (bucket order -> node), 'bucket_inputs'
        (every bucket's parent slices in bucket order), 'bucket_parents:i' or 'bucket_kids:i'."""
        ck = (key, str(device))
        t = self._cache.get(ck)
        if t is None:
            if key == "parents":
                values: Sequence[int] = self.parents
            elif key == "order":
                values = self._order
            elif key == "bucket_inputs":
                values = self._bucket_inputs
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


def node_rows(module: nn.Module, name: str, span: tuple[int, int] | None) -> torch.Tensor:
    """Rows [a, b) (leading node dimension) of parameter `name`: the piece `split_nodes` made.

    Outside `split_nodes` (or for a span it did not make) this is a plain slice: in backward each
    slice materialises a zero gradient of the whole parameter, so a level run in many chunks
    must split its parameters once (`split_nodes`) to keep backward linear in the chunks.
    """
    p = getattr(module, name)
    if span is None:
        return p
    views = module.__dict__.get("_node_views")
    if views is not None:
        piece = views.get((name, span))
        if piece is not None:
            return piece
    return p[span[0] : span[1]]


@contextmanager
def split_nodes(modules: Iterable[nn.Module], spans: Sequence[tuple[int, int]]) -> Iterator[None]:
    """Split each per-node parameter of `modules` ONCE into the pieces of `spans` (`node_rows`).

    One `torch.split` per parameter: its backward concatenates the pieces' gradients (linear),
    where per-chunk slices would each add a zero tensor of the whole parameter (quadratic).
    """
    sizes = [b - a for a, b in spans]
    touched = []
    for m in modules:
        if not isinstance(m, GroupedConv | GroupedBatchNorm):
            continue
        views: dict[tuple[str, tuple[int, int]], torch.Tensor] = {}
        for name, p in m.named_parameters(recurse=False):
            views.update(
                {(name, sp): t for sp, t in zip(spans, torch.split(p, sizes), strict=True)}
            )
        m.__dict__["_node_views"] = views
        touched.append(m)
    try:
        yield
    finally:
        for m in touched:
            m.__dict__.pop("_node_views", None)


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
        return node_rows(self, "weight", span)

    def forward(self, x: torch.Tensor, span: tuple[int, int] | None = None) -> torch.Tensor:
        """x holds the nodes' inputs side by side: (N, n·in, H, W) -> (N, n·out, H', W').

        span=(a, b): only nodes a..b-1 (x then holds their b-a inputs).
        """
        w = self.node_weight(span)
        nodes = w.shape[0]
        w = w.reshape(nodes * self.cout, self.cin, self.kernel, self.kernel)
        b = None if self.bias is None else node_rows(self, "bias", span).reshape(-1)
        return F.conv2d(x, w, b, self.stride, self.padding, 1, nodes)

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
    weights = [c.node_weight(span) for c in convs]
    biases = [None if c.bias is None else node_rows(c, "bias", span) for c in convs]
    return parent_convs(x, wiring, weights, [c.stride for c in convs], biases)


def parent_convs(
    x: torch.Tensor,
    wiring: Wiring,
    weights: Sequence[torch.Tensor],
    strides: Sequence[int],
    biases: Sequence[torch.Tensor | None] | None = None,
) -> list[torch.Tensor]:
    """Unpadded convolutions of each node's parent slice, without replicating parent slices.

    weights[j]: (n, out, in, kh, kw) per node, biases[j]: (n, out) or None. The input slices are
    put in bucket order once (no copy when they already are) and split into the buckets; the
    weights are put in bucket order once (no copy when the nodes already are) and split; each
    bucket's conv runs with groups = #parents and the children's weights side by side; the
    outputs are written to their nodes' positions (no copy when the buckets are in node order).
    One reorder and one split per tensor keep backward linear in the number of buckets (a
    per-bucket slice or gather would add a zero gradient of the whole tensor per bucket).
    """
    n_, _, h, w = x.shape
    cin = weights[0].shape[2]
    bias_list = list(biases) if biases is not None else [None] * len(weights)
    m_sizes = [len(ps) for ps, _, _ in wiring.buckets]
    kid_sizes = [len(kids) for _, kids, _ in wiring.buckets]
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

    def by_bucket(t: torch.Tensor) -> Sequence[torch.Tensor]:
        if not wiring.in_order:
            t = t.index_select(0, wiring.index("order", t.device))
        return torch.split(t, kid_sizes) if len(kid_sizes) > 1 else (t,)

    outs: list[torch.Tensor] = []
    for wt, s, bias in zip(weights, strides, bias_list, strict=True):
        wbs = prepared("buckets", (wt,), functools.partial(by_bucket, wt))
        bbs: Sequence[torch.Tensor | None] = (
            prepared("buckets", (bias,), functools.partial(by_bucket, bias))
            if bias is not None
            else [None] * len(wbs)
        )
        ys = []
        for xb, wb, bb, m in zip(xbs, wbs, bbs, m_sizes, strict=True):
            wb = wb.reshape(-1, *wt.shape[2:])
            ys.append(F.conv2d(xb, wb, None if bb is None else bb.reshape(-1), s, 0, 1, m))
        y = ys[0] if len(ys) == 1 else torch.cat(ys, 1)
        if not wiring.in_order:
            y5 = y.view(n_, wiring.n, wt.shape[1], *y.shape[-2:])
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

    def forward(self, x: torch.Tensor, span: tuple[int, int] | None = None) -> torch.Tensor:
        """Batch norm of all nodes, or of nodes [a, b) (their statistics are updated in place)."""
        a, b = span if span is not None else (0, self.n)
        if self.training and a == 0:  # once per forward of the level, also when run in chunks
            self.num_batches_tracked.add_(1)
        return F.batch_norm(
            x,
            self.running_mean[a:b].view(-1),
            self.running_var[a:b].view(-1),
            node_rows(self, "weight", span).reshape(-1),
            node_rows(self, "bias", span).reshape(-1),
            self.training,
            self.momentum,
            self.eps,
        )

    def extra_repr(self) -> str:
        return f"nodes={self.n}, channels={self.c}"


class LevelScales(nn.Module):
    """What every block kind's grouped level shares: per-node attention scales (`set_scales`,
    `scales`), CPU image groups (`image_groups`, `run_image_groups`) and the derived weights
    kept for inference (`prepared_memo`).

    Subclasses set ``specs``, ``n``, call `_init_scales` and say how many bytes one image needs
    (`_group_image_bytes`); `_scale_tensor` gives one factor per channel the kind's attention
    point has (``attention_channels`` per node).
    """

    specs: tuple[BlockSpec, ...]
    n: int

    def train(self, mode: bool = True) -> LevelScales:
        """Also forgets the weights derived for inference (`prepared_scope`): a mode switch is
        where a training loop's weight changes end, including changes made through ``.data``,
        which no version counter sees (`clear_prepared` does the same without a switch)."""
        self.prepared_memo.clear()
        return super().train(mode)

    def _init_scales(self) -> None:
        self._scales: tuple[float, ...] | None = None
        self._scale_cache: dict[str, torch.Tensor] = {}
        self.cpu_chunk_bytes: int | None = CPU_CHUNK_BYTES
        self.prepared_memo = PreparedMemo()

    def _group_image_bytes(self, x: torch.Tensor) -> int | None:
        """Bytes one image needs of the tensors image groups keep small; None: never group."""
        raise NotImplementedError

    def image_groups(self, x: torch.Tensor) -> list[tuple[int, int]]:
        """Batch ranges run one after the other (`image_spans`): on the CPU, groups of about
        `cpu_chunk_bytes`; elsewhere, or where the kind says None, the whole batch."""
        per_image = self._group_image_bytes(x) if x.device.type == "cpu" else None
        if per_image is None:
            return [(0, x.shape[0])]
        return image_spans(x.shape[0], per_image, self.cpu_chunk_bytes)

    def run_image_groups(
        self,
        x: torch.Tensor,
        groups: list[tuple[int, int]],
        run: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """`run` on each group of images, concatenated, with derived weights made once."""
        with prepared_scope(self.prepared_memo, len(groups)):
            if len(groups) == 1:
                return run(x)
            return torch.cat([run(x[a:b]) for a, b in groups])

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
        self._wiring_cache: dict[tuple, tuple[list[int], list[list[int]], list[Wiring]]] = {}

    def chunks(self, x: torch.Tensor) -> list[tuple[int, int]]:
        """Node ranges run one after the other: the whole level at once except on the CPU.

        On the CPU a level is memory-bound when its n·c-channel tensors are far larger than the
        caches, so nodes run in chunks whose largest intermediate tensor is about
        `CPU_CHUNK_BYTES` (still one grouped computation per chunk of nodes).
        """
        if x.device.type != "cpu" or self.cpu_chunk_bytes is None:
            return [(0, self.n)]
        per_node = self._node_image_bytes(x) * x.shape[0]
        size = max(1, self.cpu_chunk_bytes // max(per_node, 1))
        return [(a, min(a + size, self.n)) for a in range(0, self.n, size)]

    def _node_image_bytes(self, x: torch.Tensor) -> int:
        """Bytes of the largest intermediate tensor of one node for one image."""
        _, _, h, w = x.shape
        per_node = 0
        for spec in self.specs:
            ho, wo = (h - 1) // spec.stride + 1, (w - 1) // spec.stride + 1
            per_node = max(per_node, spec.mid * h * w, max(spec.mid, spec.cout) * ho * wo)
            h, w = ho, wo
        return per_node * x.element_size()

    def _group_image_bytes(self, x: torch.Tensor) -> int | None:
        """In eval mode, image groups small enough that a node chunk (`chunks`) holds
        `MIN_CHUNK_NODES` nodes (or the whole level); in training mode batch norm needs the
        whole batch's statistics: no groups."""
        if self.training:
            return None
        return self._node_image_bytes(x) * min(self.n, MIN_CHUNK_NODES)

    def _plan(
        self, spans: list[tuple[int, int]]
    ) -> tuple[list[int], list[list[int]], list[Wiring]]:
        """How the chunks read the input: ONE split of it, each chunk's pieces and wiring.

        The input's slices are split once at every chunk's parent range [lo, hi); a chunk reads
        the pieces of its range (concatenated only when another chunk's range ends inside it)
        through a wiring relative to lo. Backward then concatenates the pieces' gradients instead
        of adding a whole-input zero gradient per chunk (quadratic in the chunks). A level-1
        input (one slice shared by all nodes) is read whole: sizes is then [].
        """
        key = tuple(spans)
        plan = self._wiring_cache.get(key)
        if plan is not None:
            return plan
        parents, n_in = self.wiring.parents, self.wiring.n_inputs
        if n_in == 1:
            plan = ([], [[] for _ in spans], [Wiring(parents[a:b], 1) for a, b in spans])
        else:
            ranges = [(min(parents[a:b]), max(parents[a:b]) + 1) for a, b in spans]
            bounds = sorted({0, n_in, *(e for r in ranges for e in r)})
            first = {lo: i for i, lo in enumerate(bounds)}
            sizes = [hi - lo for lo, hi in itertools.pairwise(bounds)]
            pieces = [list(range(first[lo], first[hi])) for lo, hi in ranges]
            wirings = [
                Wiring([p - lo for p in parents[a:b]], hi - lo)
                for (a, b), (lo, hi) in zip(spans, ranges, strict=True)
            ]
            plan = (sizes, pieces, wirings)
        self._wiring_cache[key] = plan
        return plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = self.image_groups(x)
        # every group runs the node chunks of the first (the largest): parameters are split and
        # bucket-ordered once for all groups
        spans = self.chunks(x[groups[0][0] : groups[0][1]])
        once = len(groups) > 1 and len(spans) > 1
        with split_nodes(self.blocks.modules(), spans) if once else nullcontext():
            return self.run_image_groups(
                x, groups, lambda xs: self._forward_nodes(xs, spans, split=not once)
            )

    def _forward_nodes(
        self, x: torch.Tensor, spans: list[tuple[int, int]], split: bool = True
    ) -> torch.Tensor:
        """The level on one group of images: its nodes at once, or in the chunks `spans`.

        split=False: the caller has split the parameters (`split_nodes`) for these spans.
        """
        scale = self._scale_tensor(x.device)
        if len(spans) == 1:
            for i, block in enumerate(self.blocks):
                x = block(x, scale if i == 0 else None)
            return x
        width = 0 if scale is None else scale.numel() // self.n
        sizes, pieces, wirings = self._plan(spans)
        if not sizes:
            inputs = [x] * len(spans)
        else:
            c = x.shape[1] // self.wiring.n_inputs
            parts = torch.split(x, [s * c for s in sizes], 1)
            inputs = [
                parts[p[0]] if len(p) == 1 else torch.cat([parts[i] for i in p], 1) for p in pieces
            ]
        outs = []
        with split_nodes(self.blocks.modules(), spans) if split else nullcontext():
            for (a, b), xa, wa in zip(spans, inputs, wirings, strict=True):
                h = xa
                for i, block in enumerate(self.blocks):
                    if i == 0:
                        s = None if scale is None else scale[a * width : b * width]
                        h = block(h, s, span=(a, b), wiring=wa)
                    else:
                        h = block(h, None, span=(a, b))
                outs.append(h)
        return torch.cat(outs, 1)

    def extra_repr(self) -> str:
        return f"nodes={self.n}, inputs={self.wiring.n_inputs}"
