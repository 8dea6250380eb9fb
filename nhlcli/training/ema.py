"""An exponential moving average (EMA) of the weights, as timm users deploy them (`--ema DECAY`).

PyTorch's own `torch.optim.swa_utils.AveragedModel` with its EMA rule does the averaging: after
every optimizer step, ema = decay·ema + (1 - decay)·weights, buffers (batch-norm statistics)
included; the first update copies the weights. The averaged network is a `HierNet` of its own
(`ema.module`), validated after every epoch and saved as the checkpoint's `ema/` folder
(`runs/train/NAME/last-ema`, `best-ema`). On resume its weights and update count are restored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An EMA copy of `model` (not yet updated: its first update copies the weights)."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def ema_state(ema: AveragedModel) -> dict[str, Any]:
    """What train_state.pt keeps of the EMA besides its weights (saved as a model folder)."""
    return {"n_averaged": int(ema.n_averaged.item())}


def restore_ema(ema: AveragedModel, folder: Path, state: dict[str, Any]) -> None:
    """The EMA weights of a checkpoint's `ema/` folder and the saved update count."""
    from nhlcli.checkpoint import load_model

    saved = load_model(folder)
    ema.module.load_state_dict(saved.state_dict())
    ema.n_averaged.fill_(int(state["n_averaged"]))
