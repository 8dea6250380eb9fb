"""Class names in messages: how names compare, which names a misspelling suggests, how a name
that stands for several classes tells them apart.

`suggest` is the one did-you-mean behind every class, tree-node and cue name nhl resolves (class
files, `--classes`, `--attend`, `--highlight`, cues). A candidate is a class or tree node with
every name it answers to (its name and synonyms). Candidates are ranked:

1. *whole words*: every word of the text is a word of one of its names (`springer` →
   "English springer");
2. *substrings*: the text is part of one of its names (`retriev` → "golden retriever"), for texts
   of at least 3 characters;
3. *close spellings*: difflib's similarity of the text and one of its names is at least 0.6
   (`chruch` → "church").

Within a rank the candidate whose name is closer to the text as a whole comes first (difflib's
similarity), then the order the candidates were given in.

`sense_label` names one of several classes of the same name by its id and the first clause of its
WordNet definition (`n02012849 (crane: large long-necked wading bird of marshes and…)`), so the
bird can be told from the machine; without WordNet data, or for an id that is not a WordNet noun,
by its id and name only.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

SUGGESTIONS = 3  # names a did-you-mean offers
CLOSE_SPELLING = 0.6  # difflib similarity from which a name counts as a close spelling
MIN_SUBSTRING = 3  # shorter texts do not match as parts of names
DEFINITION_CHARS = 50  # a definition in a message is cut to this many characters


def normalize_name(text: str) -> str:
    """Case- and separator-insensitive form of a class name: `Tabby_Cat` -> `tabby cat`."""
    return " ".join(text.replace("_", " ").lower().split())


@dataclass(frozen=True)
class Candidate:
    """A class or node a did-you-mean may offer: `label` is what the message shows (a spelling
    that resolves to it), `names` every name it answers to (label included)."""

    label: str
    names: tuple[str, ...]


Candidates = Callable[[], Sequence[Candidate]]  # built only when a name is unknown


def suggest(text: str, candidates: Iterable[Candidate], n: int = SUGGESTIONS) -> list[str]:
    """The labels of the (at most n) candidates that best match `text`, best first (module doc)."""
    key = normalize_name(text)
    if not key:
        return []
    words = set(key.split())
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(key)  # difflib caches facts about the second sequence
    ranked: list[tuple[int, float, int, str]] = []
    for order, cand in enumerate(candidates):
        best: tuple[int, float] | None = None
        for name in cand.names:
            found = _rank(key, words, normalize_name(name), matcher)
            if found is not None and (best is None or found < best):
                best = found
        if best is not None:
            ranked.append((*best, order, cand.label))
    out: list[str] = []
    for *_, label in sorted(ranked):
        if label not in out:
            out.append(label)
            if len(out) == n:
                break
    return out


def _rank(
    key: str, words: set[str], name: str, matcher: difflib.SequenceMatcher
) -> tuple[int, float] | None:
    """(rank, -similarity) of one name for the text `key`, or None when it does not match."""
    if not name:
        return None
    matcher.set_seq1(name)
    if words <= set(name.split()):
        return 0, -matcher.ratio()
    if len(key) >= MIN_SUBSTRING and key in name:
        return 1, -matcher.ratio()
    if matcher.real_quick_ratio() >= CLOSE_SPELLING and matcher.quick_ratio() >= CLOSE_SPELLING:
        similarity = matcher.ratio()
        if similarity >= CLOSE_SPELLING:
            return 2, -similarity
    return None


def did_you_mean(text: str, candidates: Iterable[Candidate], n: int = SUGGESTIONS) -> str:
    """`; did you mean 'a', 'b'?` for the best candidates, or "" when none is close."""
    close = suggest(text, candidates, n)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def sense_label(class_id: str, name: str, define: bool = True) -> str:
    """`id (name: short WordNet definition)`, or `id (name)` where WordNet has no definition (or
    `define` is off)."""
    from nhlcli.hierarchy.wordnet_data import short_definition

    definition = short_definition(class_id, DEFINITION_CHARS) if define else None
    return f"{class_id} ({name}: {definition})" if definition else f"{class_id} ({name})"
