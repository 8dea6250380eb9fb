"""Class sets: the ImageNet-1k catalogue, the built-in subsets, and class files.

A class is identified by its WordNet noun id in ImageNet style (`n02123045`). A class file has one
class per line: a wnid, a WordNet synset name (`tabby.n.01`) or a name that resolves to exactly one
ImageNet class (`tabby`, `tabby cat`; case-insensitive, synonyms count). Blank lines and `#`
comments are ignored. Every problem of a file is reported at once, with line numbers.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cache, cached_property
from pathlib import Path

from nhlcli.errors import MAX_SHOWN_PROBLEMS, NhlError
from nhlcli.hierarchy.names import Candidate, Candidates, did_you_mean, normalize_name, sense_label
from nhlcli.resources import shipped
from nhlcli.textio import read_text

WNID_RE = re.compile(r"^n\d{8}$")
SYNSET_RE = re.compile(r"^[^\s.]+(?:\.[^\s.]+)*\.n\.\d{2}$")
CLASS_FILE_SUFFIXES = (".txt", ".tsv")  # a name with one of these is meant as a class file


@dataclass(frozen=True)
class ClassRef:
    """One class: its wnid and a human name."""

    wnid: str
    name: str


@dataclass(frozen=True)
class ImageNetClass:
    index: int
    wnid: str
    name: str
    keras_name: str
    synonyms: tuple[str, ...]
    synset: str  # WordNet synset name, e.g. "tabby.n.01"

    @property
    def ref(self) -> ClassRef:
        return ClassRef(self.wnid, self.name)


class ImageNetCatalog:
    """The 1000 ImageNet-1k classes with every name that resolves to them."""

    def __init__(self, classes: Sequence[ImageNetClass]) -> None:
        self.classes = list(classes)
        self.by_wnid = {c.wnid: c for c in self.classes}
        self.by_synset = {c.synset: c for c in self.classes if c.synset}
        names: dict[str, list[str]] = {}
        for c in self.classes:
            for alias in {c.name, c.keras_name, *c.synonyms, c.synset.split(".")[0]}:
                if alias:
                    key = normalize_name(alias)
                    if c.wnid not in names.setdefault(key, []):
                        names[key].append(c.wnid)
        self.by_name = names

    def lookup_name(self, text: str) -> list[ImageNetClass]:
        return [self.by_wnid[w] for w in self.by_name.get(normalize_name(text), [])]

    @cached_property
    def candidates(self) -> list[Candidate]:
        """Every class with all its names, for a did-you-mean (`nhlcli.hierarchy.names`)."""
        return [
            Candidate(c.name, (c.name, *c.synonyms, c.synset.split(".")[0])) for c in self.classes
        ]

    def synonyms(self, wnid: str) -> tuple[str, ...]:
        """The names of an ImageNet class (() for another id)."""
        c = self.by_wnid.get(wnid)
        return (c.name, *c.synonyms) if c is not None else ()


@cache
def imagenet() -> ImageNetCatalog:
    synsets = _read_synset_names()
    rows: list[ImageNetClass] = []
    with shipped("classsets", "imagenet1k.tsv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            rows.append(
                ImageNetClass(
                    index=int(row["index"]),
                    wnid=row["wnid"],
                    name=row["name"],
                    keras_name=row["keras_name"],
                    synonyms=tuple(s.strip() for s in row["synonyms"].split(",") if s.strip()),
                    synset=synsets.get(row["wnid"], ""),
                )
            )
    return ImageNetCatalog(rows)


def _read_synset_names() -> dict[str, str]:
    path = shipped("classsets", "imagenet1k-synsets.tsv")
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            wnid, synset = line.split("\t")[:2]
            out[wnid] = synset
    return out


@dataclass(frozen=True)
class ClassSet:
    """An ordered list of classes with where it came from."""

    name: str
    source: str
    classes: tuple[ClassRef, ...]

    @property
    def wnids(self) -> list[str]:
        return [c.wnid for c in self.classes]

    def __len__(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class BuiltinSet:
    name: str
    file: str
    source: str


BUILTIN_SETS: dict[str, BuiltinSet] = {
    s.name: s
    for s in (
        BuiltinSet(
            "imagenet1k", "imagenet1k.tsv", "ImageNet-1k (ILSVRC-2012), standard index order"
        ),
        BuiltinSet("imagenette", "imagenette.txt", "fastai Imagenette (imagenette2), wnid order"),
        BuiltinSet("imagewoof", "imagewoof.txt", "fastai Imagewoof (imagewoof2), wnid order"),
        BuiltinSet(
            "imagenet100",
            "imagenet100.txt",
            "Kaggle ambityga/imagenet100 (the paper's ImageNet100)",
        ),
        BuiltinSet("imagenet100-cmc", "imagenet100-cmc.txt", "CMC ImageNet-100 (HobbitLong/CMC)"),
    )
}


def builtin_set(name: str) -> ClassSet:
    spec = BUILTIN_SETS.get(name)
    if spec is None:
        known = ", ".join(BUILTIN_SETS)
        raise NhlError(f"unknown class set '{name}' (built-in: {known})")
    if name == "imagenet1k":
        refs = tuple(c.ref for c in imagenet().classes)
    else:
        cat = imagenet()
        lines = shipped("classsets", spec.file).read_text(encoding="utf-8").splitlines()
        refs = tuple(cat.by_wnid[line.split("\t")[0]].ref for line in lines if line.strip())
    return ClassSet(name, spec.source, refs)


Resolver = Callable[[str], "list[ClassRef] | None"]
MAX_CLASSES = 100_000  # WordNet has about 82,000 noun synsets
MAX_CLASS_FILE_BYTES = 64 * 1024 * 1024


def load_classes(
    spec: str | Path,
    extra: Resolver | None = None,
    candidates: Candidates | None = None,
) -> ClassSet:
    """A built-in class set by name, a class file by path, or comma-separated class tokens
    (`tench,church`: each token as a line of a class file).

    `extra` resolves tokens before the ImageNet rules (e.g. tree node names selecting all classes
    under a superclass); it returns None when it does not know the token. `candidates` are the
    names an unknown token's did-you-mean offers (default: the ImageNet classes).
    """
    text_spec = str(spec)
    if text_spec in BUILTIN_SETS:
        return builtin_set(text_spec)
    path = Path(text_spec)
    if "," in text_spec and not path.is_file() and not names_a_file(text_spec):
        tokens = text_spec.split(",")
        listed = parse_class_lines(tokens, text_spec, extra, candidates, item="item")
        return replace(listed, name=text_spec)
    if not path.is_file():
        raise NhlError(
            f"'{text_spec}' is neither a built-in class set ({', '.join(BUILTIN_SETS)}) "
            "nor a class file"
        )
    text = read_text(path, "class file", limit=MAX_CLASS_FILE_BYTES)
    return parse_class_lines(text.splitlines(), str(path), extra, candidates)


def names_a_file(spec: str) -> bool:
    """Whether a --classes value is meant as a file: a class-file suffix or a folder in it."""
    return spec.endswith(CLASS_FILE_SUFFIXES) or "/" in spec


def parse_class_lines(
    lines: Iterable[str],
    origin: str = "<classes>",
    extra: Resolver | None = None,
    candidates: Candidates | None = None,
    item: str = "line",
) -> ClassSet:
    """The classes of a class file's lines (`item` names a line in messages: "line 3")."""
    refs: list[ClassRef] = []
    first_line: dict[str, int] = {}
    problems: list[str] = []
    tokens = 0
    for lineno, raw in enumerate(lines, start=1):
        token = raw.split("#", 1)[0].strip()
        if not token:
            continue
        tokens += 1
        if tokens > MAX_CLASSES:
            raise NhlError(f"{origin}: more than {MAX_CLASSES:,} classes; nhl reads at most that")
        try:  # spelling suggestions only for the problems a message will show
            suggest = len(problems) < MAX_SHOWN_PROBLEMS
            found = resolve_token(token, extra, suggest, candidates)
        except NhlError as e:
            problems.append(f"{item} {lineno}: {e}")
            continue
        for ref in found:
            if ref.wnid in first_line:
                problems.append(
                    f"{item} {lineno}: '{token}' repeats {ref.wnid} ({ref.name}) "
                    f"already given on {item} {first_line[ref.wnid]}"
                )
                continue
            first_line[ref.wnid] = lineno
            refs.append(ref)
    if problems:
        n = len(problems)
        raise NhlError(f"{origin}: {n} problem{'s' if n > 1 else ''}", problems)
    if not refs:
        raise NhlError(f"{origin}: no classes (only blank lines or comments)")
    return ClassSet(Path(origin).stem, origin, tuple(refs))


def resolve_token(
    token: str,
    extra: Resolver | None = None,
    suggest: bool = True,
    candidates: Candidates | None = None,
) -> list[ClassRef]:
    """Resolve one class-file token to its class(es) or raise NhlError saying why not: the
    classes of an ambiguous name with their definitions, close names of `candidates` (default:
    the ImageNet classes) for an unknown one; neither when `suggest` is off (a message nobody
    reads: no WordNet lookups)."""
    if extra is not None:
        found = extra(token)
        if found is not None:
            return found
    cat = imagenet()
    if WNID_RE.match(token):
        if token in cat.by_wnid:
            return [cat.by_wnid[token].ref]
        return [_wordnet_ref(token)]
    if SYNSET_RE.match(token):
        if token in cat.by_synset:
            return [cat.by_synset[token].ref]
        return [_wordnet_ref(token)]
    matches = cat.lookup_name(token)
    if len(matches) == 1:
        return [matches[0].ref]
    if len(matches) > 1:
        senses = ", ".join(
            sense_label(c.wnid, ", ".join(c.synonyms[:2]), define=suggest) for c in matches
        )
        raise NhlError(f"'{token}' is ambiguous: {senses}; write the wnid instead")
    hint = ""
    if suggest:
        hint = did_you_mean(token, cat.candidates if candidates is None else candidates())
    raise NhlError(f"'{token}' is not an ImageNet class name, wnid or synset{hint}")


def _wordnet_ref(token: str) -> ClassRef:
    """A noun synset outside ImageNet-1k, given by wnid or synset name (needs WordNet data)."""
    from nhlcli.hierarchy.wordnet_data import synset_ref

    return synset_ref(token)
