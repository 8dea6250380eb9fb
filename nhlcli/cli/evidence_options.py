"""`nhl build-tree --source induced`: the model's evidence and the source options from flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nhlcli.cli.common import err_console
from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import ClassRef, ClassSet, load_classes


def induced_options(
    classes: str | None,
    model: Path | None,
    data: Path | None,
    embedding: str | None,
    linkage: str | None,
    names: str | None,
    device: str | None,
    llm: dict[str, Any],
) -> tuple[ClassSet, dict[str, Any]]:
    """(the classes of the tree, the InducedOptions fields): reads the model once over --data."""
    import nhlcli as nhl
    from nhlcli.hierarchy.llm.settings import LLMSettings

    if model is None:
        raise NhlError(
            "--source induced needs --model CKPT (a trained model), and --data DIR for the "
            "features or confusion embedding"
        )
    kind = embedding or ("features" if data is not None else "weights")
    if kind != "weights" and data is None:
        raise NhlError(f"--embedding {kind} needs --data DIR (images of the classes)")
    class_set = load_classes(classes) if classes is not None else None
    wanted = class_set.wnids if class_set is not None else None
    with err_console.status(f"reading {model} over {data}" if data else f"reading {model}"):
        evidence = nhl.collect_evidence(model, data, classes=wanted, device=device)
    if class_set is None:
        refs = tuple(ClassRef(c, n) for c, n in zip(evidence.class_ids, evidence.class_names,
                                                    strict=True))  # fmt: skip
        class_set = ClassSet(f"classes of {model}", str(model), refs)
    options: dict[str, Any] = {
        "evidence": evidence,
        "embedding": kind,
        "linkage": linkage,
        "names": names,
    }
    if names == "llm":
        options["llm"] = LLMSettings(**llm)
    return class_set, options
