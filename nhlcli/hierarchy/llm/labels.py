"""Readable, unique class labels for prompts, and mapping the model's labels back to wnids.

The model sees class names, not wnids: names carry the meaning it groups by. Names that occur more
than once in a class set (ImageNet has two `crane`s and two `maillot`s) get a hint in parentheses:
the WordNet parent when WordNet is installed (`crane (wading bird)`, `crane (lifting device)`),
otherwise another synonym, otherwise the wnid. Labels are made once for the whole class set, so
every request of a build uses the same label for a class.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import WNID_RE, ClassRef, imagenet, normalize_name

_TRAILING_HINT = re.compile(r"\s*\([^()]*\)\s*$")
_WNID_IN_TEXT = re.compile(r"n\d{8}")


@dataclass(frozen=True)
class Resolved:
    """The class a label names (wnid), or why it names none (problem)."""

    wnid: str | None
    problem: str | None = None


class ClassLabels:
    """Labels of some classes, in class order, with the reverse mapping."""

    def __init__(self, wnids: Sequence[str], labels: Sequence[str], names: Sequence[str]) -> None:
        if not (len(wnids) == len(labels) == len(names)):
            raise ValueError("wnids, labels and names must have the same length")
        self.wnids: tuple[str, ...] = tuple(wnids)
        self.labels: tuple[str, ...] = tuple(labels)
        self.names: tuple[str, ...] = tuple(names)
        self._label = dict(zip(self.wnids, self.labels, strict=True))
        self._exact = {lab: w for w, lab in zip(self.wnids, self.labels, strict=True)}
        self._norm = {
            normalize_name(lab): w for w, lab in zip(self.wnids, self.labels, strict=True)
        }
        self._by_base: dict[str, list[str]] = {}
        for w, name in zip(self.wnids, self.names, strict=True):
            self._by_base.setdefault(normalize_name(name), []).append(w)

    def __len__(self) -> int:
        return len(self.wnids)

    def label(self, wnid: str) -> str:
        return self._label[wnid]

    def subset(self, wnids: Iterable[str]) -> ClassLabels:
        """The same labels for a subset of the classes (in the order given)."""
        pos = {w: i for i, w in enumerate(self.wnids)}
        idx = [pos[w] for w in wnids]
        return ClassLabels(
            [self.wnids[i] for i in idx],
            [self.labels[i] for i in idx],
            [self.names[i] for i in idx],
        )

    def resolve(self, text: object) -> Resolved:
        """Map a label written by the model back to a wnid of this set.

        Tried in order: the exact label; the label ignoring case, `_` and spacing; a wnid of the set
        inside the text; the bare name without its `(hint)` when exactly one class has that name.
        """
        if not isinstance(text, str):
            return Resolved(None, f"{json_repr(text)} is not a class label (expected a string)")
        if text in self._exact:
            return Resolved(self._exact[text])
        key = normalize_name(text)
        if key in self._norm:
            return Resolved(self._norm[key])
        for found in _WNID_IN_TEXT.findall(text):
            if found in self._label:
                return Resolved(found)
        base = normalize_name(_TRAILING_HINT.sub("", text))
        matches = self._by_base.get(base, [])
        if len(matches) == 1:
            return Resolved(matches[0])
        if len(matches) > 1:
            options = " or ".join(repr(self._label[w]) for w in matches)
            return Resolved(None, f"'{text}' is ambiguous: write {options}")
        return Resolved(None, f"'{text}' is not one of the given classes")


def json_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def make_labels(classes: Sequence[ClassRef]) -> ClassLabels:
    """Unique prompt labels for the classes (see the module docstring for the rule)."""
    wnids = [c.wnid for c in classes]
    if len(set(wnids)) != len(wnids):
        raise NhlError("the class set lists a class twice")
    names = [c.name.strip() or c.wnid for c in classes]
    by_name: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        by_name.setdefault(normalize_name(name), []).append(i)
    labels = list(names)
    for idx in by_name.values():
        if len(idx) == 1:
            continue
        hints = _hints([classes[i] for i in idx])
        for i, hint in zip(idx, hints, strict=True):
            labels[i] = f"{names[i]} ({hint})"
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):  # a hint may collide with another class's own name
        key = normalize_name(lab)
        if key in seen or WNID_RE.match(lab):
            labels[i] = f"{names[i]} ({wnids[i]})"
        seen[normalize_name(labels[i])] = i
    return ClassLabels(wnids, labels, names)


def _hints(group: Sequence[ClassRef]) -> list[str]:
    """Distinguishing hints for classes sharing a name: WordNet parent, other synonym, or wnid."""
    for candidate in (_wordnet_parent_hints(group), _synonym_hints(group)):
        if candidate and len(set(candidate)) == len(candidate) and all(candidate):
            return candidate
    return [c.wnid for c in group]


def _wordnet_parent_hints(group: Sequence[ClassRef]) -> list[str] | None:
    try:
        from nhlcli.hierarchy.wordnet_data import display_name, synset_from_wnid

        out = []
        for c in group:
            parents = synset_from_wnid(c.wnid).hypernyms()
            out.append(display_name(parents[0]) if parents else "")
        return out
    except NhlError:  # WordNet not installed, or not a WordNet id
        return None


def _synonym_hints(group: Sequence[ClassRef]) -> list[str]:
    cat = imagenet()
    out = []
    for c in group:
        info = cat.by_wnid.get(c.wnid)
        others = [
            s
            for s in (info.synonyms if info else ())
            if normalize_name(s) != normalize_name(c.name)
        ]
        out.append(others[0] if others else "")
    return out
