"""`nhl checks`: what a user's environment has and lacks."""

from __future__ import annotations

import importlib
import platform
from typing import Any

import typer
from rich.table import Table

from nhlcli.cli.common import JSON_OPTION, console, examples, print_json, safe


def register(app: typer.Typer) -> None:
    app.command("checks", epilog=examples("nhl checks", "nhl checks --json"))(checks)


def _version(module: str) -> str | None:
    try:
        mod = importlib.import_module(module)
    except Exception:
        return None
    return str(getattr(mod, "__version__", "installed"))


def collect() -> list[dict[str, Any]]:
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
    for name, module in (("onnx export (optional)", "onnxruntime"),):
        v = _version(module)
        rows.append({"item": name, "ok": bool(v), "detail": v or "pip install 'nhl[export]'"})
    return rows


def checks(json_out: bool = JSON_OPTION) -> None:
    """Report the environment nhl needs: python, torch and GPUs, fvcore, WordNet data, openai."""
    rows = collect()
    if json_out:
        print_json(rows)
        return
    table = Table("", "component", "detail", title="nhl checks")
    for r in rows:
        ok = "[green]ok[/]" if r["ok"] else "[yellow]--[/]"
        table.add_row(ok, safe(r["item"]), safe(r["detail"]))
    console.print(table)
