"""Batched inference for evaluation: predictions restricted to a class subset, and oracle attention.

Restriction (paper eq. 3): the softmax is taken over the subset's logits only, so the prediction is
the arg-max over those logits. Predictions are returned as indices of the model's classes.

Oracle attention (paper Sec. 4.4): every image's OWN class path is amplified by a scale, i.e. the
true label guides the network. This is an upper-bound experiment, not a deployable classifier. For
speed, the trunk and the levels above the attention level run once per batch, for all scales of a
sweep; only the levels from the attention level on run once per (scale, class in the batch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nhlcli.data.augment import Normalize
from nhlcli.model.attention import (
    attention_effect,
    clear_attention,
    probability_change,
    set_attention,
)
from nhlcli.model.network import HierNet, require_finite_logits


@dataclass
class InferenceResult:
    labels: torch.Tensor  # (N,) true class indices of the model
    preds: dict[float | None, torch.Tensor]  # attention scale (None: as configured) -> (N,) preds
    skipped: list[str]  # unreadable files
    ranked: dict[float | None, torch.Tensor] | None = None  # scale -> (N, TOP_K) best first
    # (N, k) softmax over the evaluated classes (the subset's logits only, eq. 3), in subset order,
    # of the first key (no attention sweep: the model as configured; a sweep: its first scale)
    probs: torch.Tensor | None = None
    # the largest class-probability change attention made (--attend: on the first batch; a
    # sweep: any scale against 1.0, every batch); None without attention
    attention_effect: float | None = None


def forward_from_level(model: HierNet, h: torch.Tensor, start: int) -> torch.Tensor:
    """Logits from the input of level `start` (0-based) on: the tail of `HierNet.forward`."""
    for level in model.levels[start:]:
        h = level(h)
    if model.heads is not None:
        return model.heads(h)
    assert model.fc is not None
    return model.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def forward_to_level(model: HierNet, x: torch.Tensor, stop: int) -> torch.Tensor:
    """Features entering level `stop` (0-based): the trunk and levels 0..stop-1."""
    h = model.trunk(x)
    for level in model.levels[:stop]:
        h = level(h)
    return h


def oracle_logits(
    model: HierNet, x: torch.Tensor, labels: torch.Tensor, scales: Sequence[float], level: int
) -> dict[float, torch.Tensor]:
    """Logits with each image's own class amplified at `level` (1-based), for every scale.

    Groups the batch by label: images of one class share their attention setting. The model's own
    attention settings are restored afterwards.
    """
    saved_level, saved = model.attention_level, dict(model.attention)
    class_ids = model.tree.class_ids
    h = forward_to_level(model, x, level - 1)
    out = {s: torch.empty(x.shape[0], model.num_classes, device=x.device) for s in scales}
    try:
        for c in labels.unique().tolist():
            idx = (labels == c).nonzero(as_tuple=True)[0]
            hc = h.index_select(0, idx)
            for s in scales:
                set_attention(model, {class_ids[c]: s}, level=level)
                out[s].index_copy_(0, idx, forward_from_level(model, hc, level - 1).float())
    finally:
        clear_attention(model)
        if saved_level is not None:
            set_attention(model, saved, level=saved_level)
    return out


TOP_K = 5  # the ranked predictions kept per image (top-5 accuracy)


def restricted_argmax(logits: torch.Tensor, subset: torch.Tensor | None) -> torch.Tensor:
    """Arg-max over the subset's logits (eq. 3), as model class indices; all classes when None."""
    if subset is None:
        return logits.argmax(1)
    return subset[logits.index_select(1, subset).argmax(1)]


def restricted_topk(logits: torch.Tensor, subset: torch.Tensor | None, k: int) -> torch.Tensor:
    """(N, min(k, classes)) model class indices, best first, ranked over the subset's logits."""
    scores = logits if subset is None else logits.index_select(1, subset)
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return top if subset is None else subset[top]


@torch.no_grad()
def run_inference(
    model: HierNet,
    batches: Iterable,
    device: torch.device,
    subset: Sequence[int] | None = None,
    oracle_scales: Sequence[float] | None = None,
    oracle_level: int | None = None,
    autocast_dtype: torch.dtype | None = None,
    on_batch: Callable[[int], None] | None = None,
    model_name: str = "the model",
) -> InferenceResult:
    """Predictions over `nhlcli.data.dataset.Batch` batches; with oracle scales, one per scale.

    The first batch with a NaN or inf logit raises NhlError naming `model_name`.
    """
    model.prepare_inference()
    normalize = Normalize().to(device)
    sub = torch.tensor(list(subset), device=device) if subset is not None else None
    labels_all: list[torch.Tensor] = []
    keys: list[float | None] = list(oracle_scales) if oracle_scales else [None]
    preds_all: dict[float | None, list[torch.Tensor]] = {k: [] for k in keys}
    ranked_all: dict[float | None, list[torch.Tensor]] = {k: [] for k in keys}
    probs_all: list[torch.Tensor] = []
    skipped: list[str] = []
    level = oracle_level if oracle_level is not None else len(model.levels)
    effect: float | None = None
    for batch in batches:
        skipped.extend(batch.bad_paths)
        if batch.labels.numel():
            x = normalize(batch.images.to(device, non_blocking=True))
            y = batch.labels.to(device, non_blocking=True)
            with torch.autocast(
                device.type,
                dtype=autocast_dtype or torch.float32,
                enabled=autocast_dtype is not None,
            ):
                if oracle_scales:
                    outs: dict[float | None, torch.Tensor] = {
                        s: v for s, v in oracle_logits(model, x, y, oracle_scales, level).items()
                    }
                else:
                    outs = {None: model(x)}
                    if effect is None and model.attention_level is not None:
                        effect = attention_effect(model, x, outs[None])  # first batch: a check
            if oracle_scales and 1.0 in outs:  # every scale against the unamplified model
                for s, v in outs.items():
                    if s != 1.0:
                        change = probability_change(v, outs[1.0])
                        effect = change if effect is None else max(effect, change)
            for k in keys:
                logits = outs[k].float()
                require_finite_logits(logits, model_name)
                preds_all[k].append(restricted_argmax(logits, sub).cpu())
                ranked_all[k].append(restricted_topk(logits, sub, TOP_K).cpu())
            first = outs[keys[0]].float()
            scores = first if sub is None else first.index_select(1, sub)
            probs_all.append(scores.softmax(1).cpu())
            labels_all.append(y.cpu())
        if on_batch is not None:
            on_batch(int(batch.labels.numel()) + len(batch.bad_paths))
    labels = torch.cat(labels_all) if labels_all else torch.zeros(0, dtype=torch.long)
    preds = {
        k: (torch.cat(v) if v else torch.zeros(0, dtype=torch.long)) for k, v in preds_all.items()
    }
    width = min(TOP_K, len(subset) if subset is not None else model.num_classes)
    ranked = {
        k: (torch.cat(v) if v else torch.zeros(0, width, dtype=torch.long))
        for k, v in ranked_all.items()
    }
    classes = len(subset) if subset is not None else model.num_classes
    probs = torch.cat(probs_all) if probs_all else torch.zeros(0, classes)
    return InferenceResult(labels, preds, skipped, ranked, probs, effect)
