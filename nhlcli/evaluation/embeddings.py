"""One pass of a model over an image folder: what it sees and confuses, per class.

`collect_evidence` gives a `nhlcli.hierarchy.evidence.ClassEvidence`: the mean features of each
class's images (the last features every class shares: the pooled input of a shared classifier, the
pooled trunk output of per-class heads), the classifier weights of a shared-head model, every
image's class scores (logits) and the confusion matrix of the predictions. `nhl build-tree --source
induced` clusters it; `nhl tree compare` scores trees with it. Without images only the weights are
read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nhlcli.checkpoint_dirs import WEIGHTS_FILE, resolve_checkpoint
from nhlcli.data.augment import Normalize
from nhlcli.data.folders import index_image_folder, split_dir
from nhlcli.data.loader import eval_loader
from nhlcli.errors import NhlError
from nhlcli.evaluation.confusion import confusion_matrix
from nhlcli.evaluation.inference import forward_from_level, forward_to_level, restricted_argmax
from nhlcli.hierarchy.evidence import ClassEvidence
from nhlcli.model.network import HierNet


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shared_features(model: HierNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled shared features, logits) of a batch, in one forward pass."""
    if model.fc is not None:  # shared head: the classifier's input
        h = forward_to_level(model, x, len(model.levels))
        z = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)
        return z, model.fc(z)
    h = model.trunk(x)  # per-class heads: the trunk is what all classes share
    return torch.flatten(F.adaptive_avg_pool2d(h, 1), 1), forward_from_level(model, h, 0)


def collect_evidence(
    model: str | Path | HierNet,
    data: str | Path | None = None,
    classes: Sequence[str] | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    device: str | None = None,
    img_size: int | None = None,
    max_batches: int | None = None,
    allow_extra: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> ClassEvidence:
    """The evidence of a model (folder or network) on `data` (DIR/val if present).

    `classes` (model class ids) limits the images to those classes, which must all have images,
    and restricts the predictions to them (paper eq. 3); default: every class of the model.
    """
    from nhlcli.checkpoint import load_model
    from nhlcli.devices import resolve_device

    dev = resolve_device(device)
    if isinstance(model, HierNet):
        net, where, sha = model, "<model>", None
    else:
        ckpt = resolve_checkpoint(model)
        net, where, sha = load_model(ckpt), str(ckpt), file_sha256(ckpt / WEIGHTS_FILE)
    tree = net.tree
    wanted = list(classes) if classes is not None else tree.class_ids
    unknown = [c for c in wanted if c not in tree]
    if unknown:
        raise NhlError(
            f"{len(unknown)} class(es) are not classes of {where}: {', '.join(unknown[:20])}"
        )
    weights = None
    if net.fc is not None:
        weights = net.fc.weight.detach().to("cpu", torch.float64).numpy().copy()
    source: dict[str, Any] = {"model": where, "arch": net.preset.name, "weights_sha256": sha}
    names = tuple(c.name for c in tree.classes)
    if data is None:
        return ClassEvidence(tuple(tree.class_ids), names, weights=weights, source=source)
    folder = index_image_folder(
        split_dir(data, "val"), tree, allow_extra=allow_extra, required=wanted
    )
    idx = [tree.class_index(c) for c in wanted]
    folder = folder.restricted(idx)
    size = img_size or net.img_size
    loader = eval_loader(folder.samples, size, batch_size, workers, dev)
    n_batches = len(loader) if not max_batches else min(len(loader), max_batches)
    if on_start is not None:
        on_start(min(len(folder), n_batches * batch_size))
    k = net.num_classes
    net = net.to(dev).prepare_inference()
    normalize = Normalize().to(dev)
    subset = torch.tensor(idx, device=dev) if classes is not None else None
    sums: torch.Tensor | None = None
    counts = torch.zeros(k, dtype=torch.float64)
    scores, labels, preds = [], [], []
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if i >= n_batches:
                break
            if batch.labels.numel():
                x = normalize(batch.images.to(dev))
                z, logits = shared_features(net, x)
                y = batch.labels
                z64 = z.to("cpu", torch.float64)
                if sums is None:
                    sums = torch.zeros(k, z64.shape[1], dtype=torch.float64)
                sums.index_add_(0, y, z64)
                counts += torch.bincount(y, minlength=k).double()
                scores.append(logits.float().cpu())
                preds.append(restricted_argmax(logits.float(), subset).cpu())
                labels.append(y)
            if on_batch is not None:
                on_batch(int(batch.labels.numel()) + len(batch.bad_paths))
    if sums is None:
        raise NhlError(f"{folder.root}: no readable images")
    seen = counts > 0
    means = torch.zeros_like(sums)
    means[seen] = sums[seen] / counts[seen, None]
    y_all, p_all = torch.cat(labels), torch.cat(preds)
    source.update(
        data=str(folder.root),
        images=int(y_all.numel()),
        img_size=int(size),
    )
    return ClassEvidence(
        class_ids=tuple(tree.class_ids),
        class_names=names,
        features=means.numpy(),
        weights=weights,
        confusion=confusion_matrix(p_all, y_all, k).numpy(),
        scores=torch.cat(scores).numpy(),
        labels=y_all.numpy(),
        counts=counts.numpy().astype(np.int64),
        feature_kind="penultimate" if net.fc is not None else "trunk",
        source=source,
    )
