"""Cues → class sets: which of a model's classes does a word such as "meow" point to?

The paper's example: the sound "meow" narrows the 1000 ImageNet classes to the 5 domestic cats. A
cue is resolved among the classes of a model's tree, and every selected class says what it matched.

Source **wordnet** (offline, needs NLTK's WordNet data):

1. *Tree nodes.* A cue naming a node of the model's tree (case- and separator-insensitive) selects
   the classes under it.
2. *Direct.* The cue's noun senses (`cat` → cat.n.01, big_cat.n.01, …; plurals via WordNet's
   morphology; a wnid or a synset name such as `tabby.n.01` is taken as it is). A class matches a
   sense when it is that sense or one of its hyponyms (instance hyponyms included). Of the senses
   that reach some class, the ones in which the word is actually used (SemCor count > 0) win over
   rare ones. So `cat` → cat.n.01 ("feline mammal …: domestic cats; wildcats") = the 5 domestic
   cats + cougar + lynx, and not the big cats: they are the rare sense big_cat.n.01, reached with
   `big cat` or `feline`.
3. *Associative* (only when 1 and 2 find nothing). The cue's senses in every part of speech
   (meow.n.01 "the sound made by a cat", meow.v.01 "cry like a cat"): their derivationally related
   nouns, and the nouns of their glosses except stop words and the genus (the words of the sense's
   hypernyms, e.g. "cry"). Each gloss word is resolved as in 2, except through senses that
   generalise the cue (an ancestor of it: "objects" in vehicle's gloss) or are too general to be
   what a cue points to (WordNet depth < 7: object, person, organism, animal, device); the classes
   are then narrowed to those *called* by that word: the class's own names, or the names of its
   ancestors below the matched sense, contain the word ("house cat", "tabby cat", "Persian cat").
   `meow` → "cat" → cat.n.01 → the 5 domestic cats; cougar and lynx are cats in WordNet but nobody
   calls them "… cat". When the narrowing keeps nothing the whole sense is kept.
4. A multi-word cue that WordNet does not know is split into its content words, each resolved as in
   2.

The WordNet half lives in `cues_wordnet.py`, the language-model half in `cues_llm.py`.

Source **llm**: a chat model (through the LLM tree source's client, answer cache and repair loop)
is asked which of the classes the cue points to, with a reason for each.

A cue that matches nothing is an `NhlError` naming tree nodes with similar names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nhlcli.errors import NhlError
from nhlcli.hierarchy.tree import Tree
from nhlcli.selection import similar_names

if TYPE_CHECKING:
    from nhlcli.hierarchy.llm.settings import LLMSettings

SOURCES = ("wordnet", "llm")


@dataclass(frozen=True)
class CueMatch:
    """One selected class and why: which cue, and the chain that led to it."""

    class_id: str
    name: str
    cue: str
    why: str

    def to_dict(self) -> dict[str, str]:
        return {"class": self.class_id, "name": self.name, "cue": self.cue, "why": self.why}


@dataclass(frozen=True)
class CueResolution:
    """The classes some cues select (tree class order), each with what it matched."""

    source: str
    cues: tuple[str, ...]
    matches: tuple[CueMatch, ...]
    notes: tuple[str, ...] = ()

    @property
    def class_ids(self) -> list[str]:
        return list(dict.fromkeys(m.class_id for m in self.matches))

    def by_class(self) -> dict[str, list[CueMatch]]:
        out: dict[str, list[CueMatch]] = {}
        for m in self.matches:
            out.setdefault(m.class_id, []).append(m)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "cues": list(self.cues),
            "classes": self.class_ids,
            "matches": [m.to_dict() for m in self.matches],
            "notes": list(self.notes),
        }


def resolve_cues(
    cues: Sequence[str],
    tree: Tree,
    source: str = "wordnet",
    llm: LLMSettings | None = None,
) -> CueResolution:
    """Resolve every cue among the tree's classes; the selection is their union, in tree order."""
    cleaned = [" ".join(c.split()) for c in cues]
    if not cleaned or any(not c for c in cleaned):
        raise NhlError("a cue must be a non-empty word or phrase")
    if source not in SOURCES:
        raise NhlError(f"unknown cue source '{source}' (choose from {', '.join(SOURCES)})")
    per_cue: list[list[CueMatch]] = []
    notes: list[str] = []
    if source == "wordnet":
        from nhlcli.cues.wordnet import WordNetCues

        resolver = WordNetCues(tree)
        per_cue = [resolver.resolve(c) for c in cleaned]
    else:
        if llm is None or not llm.model:
            raise NhlError("--cue-source llm needs a chat model: pass --llm-model NAME")
        from nhlcli.cues.llm import resolve_llm_cues

        found, notes = resolve_llm_cues(cleaned, tree, llm)
        per_cue = found
    order = {cid: i for i, cid in enumerate(tree.class_ids)}
    matches = sorted(
        (m for ms in per_cue for m in ms), key=lambda m: (order[m.class_id], cleaned.index(m.cue))
    )
    return CueResolution(source, tuple(cleaned), tuple(matches), tuple(notes))


def no_match_error(tree: Tree, cue: str, where: str, hint: str = "") -> NhlError:
    close = similar_names(tree, cue, n=5)
    similar = f"; similar tree nodes: {', '.join(repr(c) for c in close)}" if close else ""
    return NhlError(
        f"cue '{cue}' matches none of the model's {tree.num_classes} classes {where}{similar}{hint}"
    )
