"""The public API: `import nhlcli as nhl` gives functions, whatever submodules are imported."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import nhlcli


def test_api_names_are_functions_even_after_every_submodule_is_imported() -> None:
    for mod in pkgutil.walk_packages(nhlcli.__path__, "nhlcli."):
        if mod.name.endswith("__main__"):
            continue
        importlib.import_module(mod.name)
    for name in nhlcli._API:
        fn = getattr(nhlcli, name)
        assert inspect.isfunction(fn), f"nhl.{name} is {fn!r}: a submodule shadows it"
        assert fn.__doc__ and fn.__module__ == "nhlcli.api", name
        hints = inspect.signature(fn)
        assert all(p.annotation is not inspect.Parameter.empty for p in hints.parameters.values())


def test_cli_commands_call_the_api() -> None:
    """Each command module that runs a workflow imports the public API, not its pieces."""
    from pathlib import Path

    cli = Path(nhlcli.__file__).parent / "cli"
    for name in ("model_cmds", "profile_cmd", "train_cmd", "eval_cmd", "export_cmd",
                 "predict_cmd", "build_tree_cmd", "demo_cmd", "experts_cmd"):  # fmt: skip
        text = (cli / f"{name}.py").read_text(encoding="utf-8")
        assert "import nhlcli as nhl" in text or "from nhlcli.api import" in text, name
        for private in ("make_expert", "init_model", "build_profile", "BuildRequest"):
            assert private not in text, (name, private)
