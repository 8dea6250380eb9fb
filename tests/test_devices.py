"""`--device` handling shared by train, eval, predict and profile --latency."""

from __future__ import annotations

import pytest
import torch

from nhlcli.devices import resolve_device
from nhlcli.errors import NhlError


def test_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected == resolve_device("auto").type


@pytest.mark.parametrize("bad", ["gpu0", "cuda:x", "xla"])
def test_unknown_devices_are_user_errors(bad: str) -> None:
    with pytest.raises(NhlError, match="device"):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_says_so() -> None:
    with pytest.raises(NhlError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_cuda_index_beyond_the_devices() -> None:
    n = torch.cuda.device_count()
    with pytest.raises(NhlError):
        resolve_device(f"cuda:{n + 3}")
