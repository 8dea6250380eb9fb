"""Devices and distributed training: one process per GPU through torchrun, DDP, rank-0 writes.

`torchrun --nproc-per-node N -m nhlcli train ...` sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR in
each process's environment; `setup_distributed` reads them, joins the process group (NCCL on CUDA,
gloo on CPU) and picks the process's device. Without those variables training runs in one process.
`launch_torchrun` is what `nhl train --devices N` uses to start torchrun for one machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml

from nhlcli.devices import resolve_device
from nhlcli.errors import NhlError


@dataclass(frozen=True)
class DistContext:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup_distributed(device_name: str | None) -> DistContext:
    """Join the process group when launched by torchrun; otherwise a one-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(0, 1, 0, resolve_device(device_name))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    base = resolve_device(device_name)
    if base.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = base
        backend = "gloo"
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        torch.set_num_threads(max(1, (cores or 1) // max(1, local_world)))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank, world, local_rank, device)


def teardown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Sum a few numbers over all ranks (identity in one process)."""
    if not ctx.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.tolist()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_command(nproc: int, args: list[str], port: int | None = None) -> list[str]:
    """`python -m torch.distributed.run` for one machine with nproc processes running `nhl ARGS`."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(nproc),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port or free_port()),
        "-m",
        "nhlcli",
        *args,
    ]


MAX_DEVICES = 1024


def check_devices(nproc: int | None) -> None:
    """NhlError unless `--devices` is absent or 1..MAX_DEVICES."""
    if nproc is not None and not 1 <= nproc <= MAX_DEVICES:
        raise NhlError(f"--devices must be in 1..{MAX_DEVICES}, not {nproc}")


def launch_torchrun(nproc: int, args: list[str]) -> int:
    """Run `nhl ARGS` in nproc processes on this machine; returns torchrun's exit code."""
    check_devices(nproc)
    if os.environ.get("WORLD_SIZE") not in (None, "1"):
        raise NhlError("--devices cannot be used inside a torchrun process")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.call(torchrun_command(nproc, args), env=env)


def launch_training(
    settings: dict[str, Any], devices: int, resume_dir: Path | None, json_out: bool = False
) -> int:
    """`nhl train` in `devices` processes: the given settings go to torchrun as a YAML file.

    Inputs are checked here first, so a bad data folder is one line, not one per process.
    """
    from nhlcli.training.inputs import load_training_data

    if resume_dir is None:
        load_training_data(
            settings["data"],
            settings.get("tree"),
            settings.get("allow_extra", False),
            arch=settings.get("arch"),
        )
    fd, path = tempfile.mkstemp(prefix="nhl-train-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(settings, f, sort_keys=False)
        args = ["train", "--config", path]
        if resume_dir is not None:
            args += ["--resume", str(resume_dir)]
        if json_out:
            args.append("--json")
        return launch_torchrun(devices, args)
    finally:
        Path(path).unlink(missing_ok=True)
