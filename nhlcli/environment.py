"""What this environment has and lacks for nhl (`nhl checks`, `nhl.environment_checks`)."""

from __future__ import annotations

import importlib
import platform
from typing import Any


def _version(module: str) -> str | None:
    try:
        mod = importlib.import_module(module)
    except Exception:
        return None
    return str(getattr(mod, "__version__", "installed"))


def environment_checks() -> list[dict[str, Any]]:
    """One row per component: {"item", "ok", "detail"} (versions, GPUs, WordNet data, extras)."""
    rows: list[dict[str, Any]] = [
        {"item": "python", "ok": True, "detail": platform.python_version()},
    ]
    torch_v = _version("torch")
    gpu = "no GPU visible"
    if torch_v:
        import torch

        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            gpu = f"{n} CUDA device(s): {torch.cuda.get_device_name(0)}"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            gpu = "Apple MPS available"
    rows.append({"item": "torch", "ok": bool(torch_v), "detail": f"{torch_v or 'missing'}; {gpu}"})
    for name, module in (
        ("fvcore", "fvcore"),
        ("openai client", "openai"),
        ("safetensors", "safetensors"),
        ("kornia", "kornia"),
        ("networkx", "networkx"),
    ):
        v = _version(module)
        rows.append({"item": name, "ok": bool(v), "detail": v or "missing: pip install " + module})
    nltk_v = _version("nltk")
    from nhlcli.hierarchy.wordnet_data import INSTALL_HINT, wordnet_location

    where = wordnet_location() if nltk_v else None
    rows.append(
        {
            "item": "WordNet (nltk)",
            "ok": where is not None,
            "detail": f"nltk {nltk_v}; data at {where}" if where else INSTALL_HINT,
        }
    )
    for name, module, extra in (
        ("onnx export (optional)", "onnxruntime", "export"),
        ("thop counter (optional)", "thop", "counters"),
        ("ptflops counter (optional)", "ptflops", "counters"),
        ("tensorboard logging (optional)", "tensorboard", "tensorboard"),
    ):
        v = _version(module)
        rows.append({"item": name, "ok": bool(v), "detail": v or f"pip install 'nhl[{extra}]'"})
    return rows
