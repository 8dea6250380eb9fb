"""Fused experts: batch norms folded into the convolutions before them (inference only).

`fuse(model)` returns a copy in which every batch norm that directly follows a convolution (the
ResNet kinds' trunk, blocks and grouped levels: ``conv1``/``bn1``, ..., a projection's
``0``/``1``) is folded into that convolution, y = s·(W*x) + (β - s·μ) with s = γ/√(σ²+ε): the
convolution gets a bias and the batch norm becomes `Folded` (no parameters, returns its input).
The result is checked against the unfused model (`check_fused`) before it is returned, so a wrong
fusion never reaches a file. ConvNeXt levels normalise with LayerNorms, which cannot be folded
into the convolution before them: their models are marked fused and left as they are.

A fused model records ``"fused": true`` in its config; `rebuild.model_from_config` rebuilds the
fused structure (`fuse_structure`) before the weights are loaded, so a fused expert loads, predicts,
profiles, cuts out and exports like any other. It keeps its running statistics folded: training
it further trains the convolutions' biases without batch norm.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch
from torch import nn

from nhlcli.errors import NhlError
from nhlcli.model.grouped_ops import GroupedBatchNorm, GroupedConv
from nhlcli.model.network import HierNet, require_finite_logits

CHECK_SEED = 0
RTOL, ATOL = 1e-3, 1e-4


class Folded(nn.Module):
    """Where a batch norm was before it was folded into the convolution before it."""

    def forward(self, x: torch.Tensor, nodes: Any = None) -> torch.Tensor:
        return x


def _pairs(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, conv name, bn name): each batch norm registered right after a convolution."""
    out = []
    for parent in model.modules():
        names = list(parent._modules)
        for a, b in itertools.pairwise(names):
            conv, bn = parent._modules[a], parent._modules[b]
            if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)) or (
                isinstance(conv, GroupedConv) and isinstance(bn, GroupedBatchNorm)
            ):
                out.append((parent, a, b))
    return out


def fuse_structure(model: HierNet) -> HierNet:
    """Give `model` the fused structure in place (biases, `Folded`); weights are NOT folded.

    Used to rebuild a saved fused model (its weights are then loaded) and by `fuse`.
    """
    for parent, conv_name, bn_name in _pairs(model):
        conv: Any = parent._modules[conv_name]
        w = conv.weight
        rows = w.shape[:2] if isinstance(conv, GroupedConv) else w.shape[:1]
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(rows, dtype=w.dtype, device=w.device))
        parent._modules[bn_name] = Folded()
    model.fused = True
    return model


def fuse(model: HierNet, check: bool = True) -> HierNet:
    """A fused copy of `model` (module doc), in eval mode; checked against it unless check=False.

    NhlError (one line) when the fused logits do not match the model's.
    """
    if getattr(model, "fused", False):
        return model
    source = copy.deepcopy(model).eval()
    fused = copy.deepcopy(source)
    folded: list[tuple[Any, torch.Tensor, torch.Tensor]] = []
    with torch.no_grad():
        for parent, conv_name, bn_name in _pairs(fused):
            conv: Any = parent._modules[conv_name]
            bn: Any = parent._modules[bn_name]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias - bn.running_mean * scale
            if conv.bias is not None:
                shift = shift + conv.bias * scale
            folded.append((conv, scale, shift))
        fuse_structure(fused)
        for conv, scale, shift in folded:
            w = conv.weight
            conv.weight.copy_(w * scale.reshape(*scale.shape, *([1] * (w.dim() - scale.dim()))))
            conv.bias.copy_(shift)
    fused.eval()
    if check:
        check_fused(source, fused)
    return fused


def check_fused(model: HierNet, fused: HierNet, batch: int = 2) -> float:
    """Largest logit difference of `fused` against `model` on random images; NhlError if too big."""
    gen = torch.Generator().manual_seed(CHECK_SEED)
    device = next(model.parameters()).device
    x = torch.randn(batch, 3, model.img_size, model.img_size, generator=gen).to(device)
    with torch.inference_mode():
        want, got = model.eval()(x), fused.eval()(x)
    require_finite_logits(want, "the model")
    diff = float((want - got).abs().max())
    tolerance = ATOL + RTOL * float(want.abs().max())
    if not diff <= tolerance:  # also catches NaN
        raise NhlError(
            f"the fused model does not match the unfused one: largest logit difference "
            f"{diff:.3g} > tolerance {tolerance:.3g}; nothing was written"
        )
    return diff
