"""Run fvcore on one module with one input, quietly, and keep what it did not count.

fvcore (`FlopCountAnalysis`) counts one multiply-accumulate as one "flop"; nhl reports that number
as MACs. fvcore warns (through the `fvcore.nn.jit_analysis` logger) about every operator it has no
handler for (the residual additions, max pooling, index gathers). Those warnings are switched off at
the source and the logger is captured as well; the skipped operators are taken from
`.unsupported_ops()` and summed in a `SkippedOps` counter that renders as ONE line.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported when a count runs: `nhl --help` stays light
    from torch import nn

FVCORE_LOGGER = "fvcore.nn.jit_analysis"


@dataclass
class SkippedOps:
    """Operators fvcore met but did not count, with how often (summed over the counted modules)."""

    ops: Counter[str] = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)  # anything fvcore logged or warned anyway
    tool: str = "fvcore"  # thop: module types it ignored (parameters and MACs not counted)

    def add(self, ops: Counter[str] | dict[str, int], times: int = 1) -> None:
        for op, n in ops.items():
            self.ops[op] += n * times

    def merge(self, other: SkippedOps, times: int = 1) -> None:
        self.add(other.ops, times)
        self.messages.extend(m for m in other.messages if m not in self.messages)

    def line(self) -> str:
        """The single summary line (empty when nothing was skipped)."""
        if not self.ops:
            return ""
        listed = ", ".join(
            f"{op.removeprefix('aten::')} ×{n:,}" for op, n in self.ops.most_common()
        )
        if self.tool == "thop":
            return f"thop counted no parameters or MACs of the module types: {listed}"
        return f"{self.tool} skipped operators it has no MAC count for: {listed}"

    def to_dict(self) -> dict[str, int]:
        return dict(self.ops.most_common())


@dataclass(frozen=True)
class Count:
    """Parameters and MACs of one module on one input (batch 1)."""

    params: int
    macs: int
    skipped: SkippedOps


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        msg = " ".join(record.getMessage().split())
        if msg not in self.sink:
            self.sink.append(msg)


@contextmanager
def captured_fvcore_output(sink: list[str]) -> Iterator[None]:
    """Route fvcore's log records and Python warnings raised while tracing into `sink`."""
    logger = logging.getLogger(FVCORE_LOGGER)
    handler = _ListHandler(sink)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for w in caught:
            msg = " ".join(str(w.message).split())
            if msg not in sink:
                sink.append(msg)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def param_count(module: nn.Module) -> int:
    """Trainable parameters (BN weight and bias included, running statistics excluded)."""
    return sum(p.numel() for p in module.parameters())


def count_module(module: nn.Module, input_shape: tuple[int, ...]) -> Count:
    """fvcore MACs and parameters of `module` (in eval mode) on a zero input of `input_shape`."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    module.eval()
    x = torch.zeros(input_shape)
    skipped = SkippedOps()
    with captured_fvcore_output(skipped.messages), torch.no_grad():
        analysis = FlopCountAnalysis(module, x)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        macs = int(analysis.total())
        skipped.add(analysis.unsupported_ops())
    return Count(param_count(module), macs, skipped)
