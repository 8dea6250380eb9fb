"""The three MAC counters nhl can compose a profile with: fvcore (default), thop and ptflops.

Each counter runs on ONE single-branch module with one zero input (batch 1) and returns its
parameters and MACs as that tool counts them:

* ``fvcore``: traces the module; counts one multiply-accumulate as one "flop" per traced operator
  it has a handler for (conv, linear, einsum, batch/layer norm, adaptive pooling); parameters are
  all parameters. Operators without a handler are listed in one line (`SkippedOps`).
* ``thop`` (`thop.profile`, the counter of the paper's Table 2 and paper 003): forward hooks on
  modules whose type it knows EXACTLY (Conv, Linear, plain BatchNorm/LayerNorm, pooling, ...);
  parameters and MACs of any other module type (timm's LayerNorm subclasses, GRN, a layer-scale
  parameter held by a block) are invisible to it. The module types it ignored are listed.
* ``ptflops`` (`get_model_complexity_info`, PyTorch backend): hooks on known module types for
  MACs; parameters are all trainable parameters.

thop and ptflops are the optional extra ``counters`` (``pip install 'nhl[counters]'``); a missing
one is a one-line error with the install command.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter

import torch
from torch import nn

from nhlcli.errors import NhlError
from nhlcli.profiling.fvcore_count import Count, SkippedOps, count_module

COUNTERS = ("fvcore", "thop", "ptflops")
DEFAULT_COUNTER = "fvcore"
INSTALL_HINT = "pip install 'nhl[counters]' (or: pip install thop ptflops)"

#: what each counter's figures are, for the report and the docs
COUNTER_NOTES = {
    "fvcore": "fvcore 'flops' at batch 1: fvcore counts one multiply-accumulate as one flop, so "
    "these are MACs (GMACs = 1e9 MACs); ReLU, residual additions and max pooling are not counted",
    "thop": "thop.profile MACs at batch 1, as the paper's Table 2 and paper 003 count: only module "
    "types thop knows exactly are counted (parameters too), so LayerNorm subclasses, GRN and layer "
    "scale are invisible to it",
    "ptflops": "ptflops get_model_complexity_info MACs at batch 1 (PyTorch backend); parameters "
    "are all trainable parameters",
}


def check_counter(counter: str) -> str:
    """The counter's name if nhl knows it and it is installed; NhlError otherwise."""
    if counter not in COUNTERS:
        raise NhlError(f"unknown counter '{counter}' (choose from {', '.join(COUNTERS)})")
    if counter != "fvcore":
        try:
            __import__(counter)
        except ImportError:
            raise NhlError(f"--counter {counter} needs {counter}: {INSTALL_HINT}") from None
    return counter


def count_with(counter: str, module: nn.Module, input_shape: tuple[int, ...]) -> Count:
    """Parameters and MACs of `module` (eval mode, zero input of `input_shape`) by `counter`."""
    check_counter(counter)
    if counter == "fvcore":
        return count_module(module, input_shape)
    if counter == "thop":
        return _thop_count(module, input_shape)
    return _ptflops_count(module, input_shape)


def _thop_count(module: nn.Module, input_shape: tuple[int, ...]) -> Count:
    import thop
    from thop.profile import register_hooks

    module.eval()
    ignored: Counter[str] = Counter(
        type(m).__name__
        for m in module.modules()
        if type(m) not in register_hooks and (any(True for _ in m.parameters(recurse=False)))
    )
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        macs, params = thop.profile(module, inputs=(torch.zeros(input_shape),), verbose=False)
    skipped = SkippedOps(tool="thop")
    skipped.add(ignored)
    return Count(round(params), round(macs), skipped)


def _ptflops_count(module: nn.Module, input_shape: tuple[int, ...]) -> Count:
    from ptflops import get_model_complexity_info

    module.eval()
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        macs, params = get_model_complexity_info(
            module,
            tuple(input_shape[1:]),
            as_strings=False,
            print_per_layer_stat=False,
            input_constructor=lambda shape: torch.zeros((1, *shape)),
        )
    return Count(int(params or 0), int(macs or 0), SkippedOps(tool="ptflops"))
