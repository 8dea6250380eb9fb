"""A tree source option of type `ClassEvidence` on the command line: a trained model read once.

`nhl build-tree` fills such a field (`InducedOptions.evidence`) from the settings of
`ModelEvidence` (`--model`, `--data`, `--device`), which are generated as options of every source
that takes evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nhlcli.cli.common import err_console
from nhlcli.devices import DEFAULT_DEVICE, DEVICE_HELP
from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import ClassRef, ClassSet, load_classes
from nhlcli.hierarchy.evidence import ClassEvidence
from nhlcli.setting_fields import setting


@dataclass
class ModelEvidence:
    """Where a `ClassEvidence` comes from: a trained model, over images of its classes."""

    model: Path | None = setting(None, "The trained model (checkpoint or run directory).")
    data: Path | None = setting(
        None,
        "Folder of class folders (DIR/val if present) for the features and confusions.",
    )
    device: str = setting(DEFAULT_DEVICE, DEVICE_HELP)


def read_evidence(
    source: str, given: ModelEvidence, classes: str | None
) -> tuple[ClassSet, ClassEvidence]:
    """(the classes of the tree: `classes`, else the model's; the model's evidence over --data)."""
    import nhlcli as nhl

    if given.model is None:
        raise NhlError(
            f"--source {source} needs --model CKPT (a trained model), and --data DIR for the "
            "features or confusion embedding"
        )
    class_set = load_classes(classes) if classes is not None else None
    wanted = class_set.wnids if class_set is not None else None
    what = f"reading {given.model}" + (f" over {given.data}" if given.data else "")
    with err_console.status(what):
        evidence = nhl.collect_evidence(
            given.model, given.data, classes=wanted, device=given.device
        )
    if class_set is None:
        refs = tuple(ClassRef(c, n) for c, n in zip(evidence.class_ids, evidence.class_names,
                                                    strict=True))  # fmt: skip
        class_set = ClassSet(f"classes of {given.model}", str(given.model), refs)
    return class_set, evidence
