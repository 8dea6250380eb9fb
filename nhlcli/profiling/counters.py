"""The MAC counters a profile can be composed with: one `CounterSpec` per counter, in one table.

Each counter runs on ONE single-branch module with one zero input (batch 1) and returns its
parameters and MACs as that tool counts them. A counter is a row of `COUNTERS`: its name, what its
MACs and parameters are (the report's `units`), a phrase for `--help`, the package it needs and the
install hint, and its count function. The `--counter` help, the report's units and the one-line
install error are generated from the table; `register_counter` adds a row.

* ``fvcore`` (default): traces the module; counts one multiply-accumulate as one "flop" per traced
  operator it has a handler for (conv, linear, einsum, batch/layer norm, adaptive pooling);
  parameters are all parameters. Operators without a handler are listed in one line (`SkippedOps`).
* ``torch`` (`torch.utils.flop_counter.FlopCounterMode`, maintained inside PyTorch): counts the
  FLOPs of the aten operators it has a formula for (convolutions, matrix products, attention), two
  per multiply-accumulate; reported halved, as MACs. Norms, pooling, activations and additions are
  not counted. Its convolution and linear MACs equal fvcore's exactly.
* ``thop`` (`thop.profile`, the counter of the main paper's Table 2 and the workshop paper):
  forward hooks on modules whose type it knows EXACTLY (Conv, Linear, plain BatchNorm/LayerNorm,
  pooling, ...); parameters and MACs of any other module type (timm's LayerNorm subclasses, GRN, a
  layer-scale parameter held by a block) are invisible to it. The module types it ignored are
  listed.
* ``ptflops`` (`get_model_complexity_info`, PyTorch backend): hooks on known module types for
  MACs; parameters are all trainable parameters.

thop and ptflops are the optional extra ``counters`` (``pip install 'nhl[counters]'``); a missing
one is a one-line error with the install command.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nhlcli.errors import NhlError
from nhlcli.profiling.fvcore_count import Count, SkippedOps, count_module, param_count

if TYPE_CHECKING:  # torch is imported when a count runs (the CLI's help reads this table)
    from torch import nn

DEFAULT_COUNTER = "fvcore"
ALL_PARAMS = "trainable parameters (BN weight and bias included, running statistics excluded)"
EXTRA_HINT = "pip install 'nhl[counters]' (or: pip install thop ptflops)"

CountFn = Callable[["nn.Module", tuple[int, ...]], Count]


@dataclass(frozen=True)
class CounterSpec:
    """One counter: everything the report, the help and the errors say about it, and its count."""

    name: str
    count: CountFn  # (module in eval mode, input shape with batch 1) -> Count
    macs: str  # what its MACs are (the report's units["macs"])
    summary: str  # a few words for `--counter` help
    params: str = ALL_PARAMS  # what its parameter count covers (units["params"])
    package: str | None = None  # the module it imports; None: always installed with nhl
    install: str = ""  # how to install `package`

    def available(self) -> bool:
        if self.package is None:
            return True
        try:
            importlib.import_module(self.package)
        except ImportError:
            return False
        return True


COUNTERS: dict[str, CounterSpec] = {}


def register_counter(spec: CounterSpec) -> CounterSpec:
    """Add a counter to the table (`--counter NAME`, `profile(counter=NAME)`)."""
    COUNTERS[spec.name] = spec
    return spec


def get_counter(counter: str) -> CounterSpec:
    """The counter's spec if nhl knows it and it is installed; NhlError otherwise."""
    spec = COUNTERS.get(counter)
    if spec is None:
        raise NhlError(f"unknown counter '{counter}' (choose from {', '.join(COUNTERS)})")
    if not spec.available():
        raise NhlError(f"--counter {counter} needs {spec.package}: {spec.install}")
    return spec


def check_counter(counter: str) -> str:
    """The counter's name if nhl knows it and it is installed; NhlError otherwise."""
    return get_counter(counter).name


def count_with(counter: str, module: nn.Module, input_shape: tuple[int, ...]) -> Count:
    """Parameters and MACs of `module` (eval mode, zero input of `input_shape`) by `counter`."""
    return get_counter(counter).count(module, input_shape)


def counters_help() -> str:
    """The `--counter` help: every counter of the table, the default first (plain text)."""
    names = sorted(COUNTERS, key=lambda n: n != DEFAULT_COUNTER)
    parts = []
    for name in names:
        spec = COUNTERS[name]
        default = ", default" if name == DEFAULT_COUNTER else ""
        parts.append(f"{name} ({spec.summary}{default})")
    needs: dict[str, list[str]] = {}
    for spec in COUNTERS.values():
        if spec.install:
            needs.setdefault(spec.install, []).append(spec.name)
    extras = "".join(f" {', '.join(n)}: {hint}." for hint, n in needs.items())
    return f"MAC counter: {', '.join(parts)}.{extras}"


# ------------------------------------------------------------------------------ the counters
def _torch_count(module: nn.Module, input_shape: tuple[int, ...]) -> Count:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    module.eval()
    mode = FlopCounterMode(display=False)
    with torch.no_grad(), mode:
        module(torch.zeros(input_shape))
    flops = mode.get_total_flops()
    return Count(param_count(module), flops // 2, SkippedOps(tool="torch"))


def _thop_count(module: nn.Module, input_shape: tuple[int, ...]) -> Count:
    import thop
    import torch
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
    import torch
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


register_counter(
    CounterSpec(
        "fvcore",
        count_module,
        macs="fvcore 'flops' at batch 1: fvcore counts one multiply-accumulate as one flop, so "
        "these are MACs (GMACs = 1e9 MACs); ReLU, residual additions and max pooling are not "
        "counted",
        summary="one flop per multiply-accumulate",
    )
)
register_counter(
    CounterSpec(
        "torch",
        _torch_count,
        macs="torch.utils.flop_counter FLOPs at batch 1, halved: PyTorch counts two FLOPs per "
        "multiply-accumulate, so these are MACs; only convolutions, matrix products and "
        "attention are counted (their MACs equal fvcore's); norms, pooling, activations and "
        "additions are not",
        summary="PyTorch's FlopCounterMode, FLOPs / 2",
    )
)
register_counter(
    CounterSpec(
        "thop",
        _thop_count,
        macs="thop.profile MACs at batch 1, as the main paper's Table 2 and the workshop paper "
        "count: only "
        "module types thop knows exactly are counted (parameters too), so LayerNorm subclasses, "
        "GRN and layer scale are invisible to it",
        summary="as the main paper's Table 2 and the workshop paper",
        params="parameters of the module types thop knows (see macs)",
        package="thop",
        install=EXTRA_HINT,
    )
)
register_counter(
    CounterSpec(
        "ptflops",
        _ptflops_count,
        macs="ptflops get_model_complexity_info MACs at batch 1 (PyTorch backend); parameters "
        "are all trainable parameters",
        summary="module hooks",
        package="ptflops",
        install=EXTRA_HINT,
    )
)


def counters_table() -> str:
    """The Markdown table of the counters (docs/profiling.md holds a copy; a test compares)."""
    rows = ["| `--counter` | MACs | parameters | needs |", "|---|---|---|---|"]
    for name, spec in COUNTERS.items():
        default = " (default)" if name == DEFAULT_COUNTER else ""
        needs = f"`{spec.install}`" if spec.install else "nothing (installed with nhl)"
        rows.append(f"| `{name}`{default} | {spec.macs} | {spec.params} | {needs} |")
    return "\n".join(rows)
