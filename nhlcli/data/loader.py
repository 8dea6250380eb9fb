"""DataLoaders over decoded image folders: workers, pinned memory, epoch-seeded order, shards."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler

from nhlcli.data.dataset import ImageFileDataset, collate_decoded


class ShardSampler(Sampler[int]):
    """Indices rank, rank+world, ...: every sample exactly once over all ranks (no padding).

    Used for evaluation, where DistributedSampler's padding would count some images twice.
    """

    def __init__(self, length: int, rank: int = 0, world: int = 1) -> None:
        self.length, self.rank, self.world = length, rank, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world))


def train_sampler(length: int, seed: int, rank: int = 0, world: int = 1) -> DistributedSampler:
    """Shuffled indices that depend only on (seed, epoch): call `set_epoch` before each epoch.

    The order is a function of the epoch number, so a resumed run sees the same order as an
    uninterrupted one without saving sampler state. One rank is the world=1 case.
    """

    class _Sized:
        def __len__(self) -> int:
            return length

    return DistributedSampler(
        _Sized(),  # type: ignore[arg-type]
        num_replicas=world,
        rank=rank,
        shuffle=True,
        seed=seed,
        drop_last=False,
    )


def make_loader(
    dataset: ImageFileDataset,
    batch_size: int,
    sampler: Sampler[int],
    workers: int,
    pin_memory: bool,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader yielding `nhlcli.data.dataset.Batch` (uint8 images, labels, skipped files)."""
    extra = {"persistent_workers": True, "prefetch_factor": 4} if workers > 0 else {}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        collate_fn=collate_decoded,
        drop_last=drop_last,
        **extra,  # type: ignore[arg-type]
    )


def balanced_subset(labels: list[int], n: int, seed: int) -> list[int]:
    """Indices of n samples spread evenly over the classes (round robin), fixed by `seed`.

    Each class's samples are shuffled with the seed, then classes take turns, so a capped
    validation sees every class (not the first classes of a sorted folder). The indices are
    returned sorted; all of them when n >= len(labels).
    """
    if n >= len(labels):
        return list(range(len(labels)))
    g = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    queues = [
        [members[j] for j in torch.randperm(len(members), generator=g).tolist()]
        for _, members in sorted(by_class.items())
    ]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n:
        for q in queues:
            if depth < len(q) and len(chosen) < n:
                chosen.append(q[depth])
        depth += 1
    return sorted(chosen)


def default_workers() -> int:
    """Decoding workers: the CPU cores this process may use, minus one for the main loop, ≤ 8."""
    try:
        import os

        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = torch.get_num_threads()
    return max(0, min(8, cores - 1))


def eval_loader(
    samples: Sequence[tuple[str, int]],
    img_size: int,
    batch_size: int,
    workers: int | None,
    device: torch.device,
) -> DataLoader:
    """Every sample once, in the given order, decoded at eval geometry (resize, centre crop)."""
    dataset = ImageFileDataset(samples, img_size, "eval")
    n_workers = workers if workers is not None else default_workers()
    return make_loader(
        dataset, batch_size, ShardSampler(len(dataset)), n_workers, device.type == "cuda"
    )
