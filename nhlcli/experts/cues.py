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

Source **llm**: a chat model (through the LLM tree source's client, answer cache and repair loop)
is asked which of the classes the cue points to, with a reason for each.

A cue that matches nothing is an `NhlError` naming tree nodes with similar names.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import SYNSET_RE, WNID_RE, imagenet, normalize_name
from nhlcli.hierarchy.llm.repair import Request
from nhlcli.hierarchy.tree import Tree

SOURCES = ("wordnet", "llm")
CUE_PROMPT_VERSION = "nhl-cue/1"

# Words of a gloss that never name what a cue points to.
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "by",
        "or",
        "and",
        "any",
        "this",
        "that",
        "these",
        "those",
        "with",
        "without",
        "in",
        "on",
        "at",
        "for",
        "to",
        "from",
        "as",
        "like",
        "made",
        "make",
        "makes",
        "making",
        "used",
        "use",
        "uses",
        "usually",
        "often",
        "especially",
        "typically",
        "some",
        "something",
        "someone",
        "kind",
        "kinds",
        "type",
        "types",
        "sort",
        "sorts",
        "thing",
        "things",
        "part",
        "parts",
        "member",
        "members",
        "one",
        "ones",
        "various",
        "etc",
        "who",
        "which",
        "whose",
        "what",
        "when",
        "where",
        "it",
        "its",
        "their",
        "them",
        "they",
        "is",
        "are",
        "be",
        "being",
        "been",
        "having",
        "has",
        "have",
        "such",
        "other",
        "another",
        "more",
        "most",
        "less",
        "very",
        "much",
        "many",
        "not",
        "no",
        "only",
        "also",
        "resembling",
        "similar",
        "found",
    ]
)
GLOSS_CHARS = 60
# Gloss words lead somewhere only through specific senses: WordNet depth 7 keeps vehicle, tool,
# dog, cat, horse, ship; it drops object (2), person (3), artifact (4), organism (5), animal and
# device (6).
MIN_GLOSS_DEPTH = 7


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


@dataclass(frozen=True)
class LlmCueSettings:
    """Where `--cue-source llm` asks (the server settings of `nhl build-tree --source llm`)."""

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    cache_dir: Path | None = None
    use_cache: bool = True
    max_repairs: int = 2


def resolve_cues(
    cues: Sequence[str],
    tree: Tree,
    source: str = "wordnet",
    llm: LlmCueSettings | None = None,
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
        resolver = WordNetCues(tree)
        per_cue = [resolver.resolve(c) for c in cleaned]
    else:
        if llm is None or not llm.model:
            raise NhlError("--cue-source llm needs a chat model: pass --llm-model NAME")
        found, notes = _resolve_llm(cleaned, tree, llm)
        per_cue = found
    order = {cid: i for i, cid in enumerate(tree.class_ids)}
    matches = sorted(
        (m for ms in per_cue for m in ms), key=lambda m: (order[m.class_id], cleaned.index(m.cue))
    )
    return CueResolution(source, tuple(cleaned), tuple(matches), tuple(notes))


def similar_nodes(tree: Tree, text: str, n: int = 5) -> list[str]:
    """Names of tree nodes (groups and classes) that look like `text` (difflib, then substrings)."""
    names: dict[str, str] = {}
    for node in (*tree.nodes, *tree.classes):
        names.setdefault(normalize_name(node.name), node.name)
    key = normalize_name(text)
    close = difflib.get_close_matches(key, list(names), n=n, cutoff=0.6)
    if len(close) < n:
        words = [w for w in key.split() if len(w) > 2]
        for k in names:
            if k not in close and any(w in k for w in words):
                close.append(k)
            if len(close) >= n:
                break
    return [names[k] for k in close]


def no_match_error(tree: Tree, cue: str, where: str, hint: str = "") -> NhlError:
    close = similar_nodes(tree, cue)
    similar = f"; similar tree nodes: {', '.join(repr(c) for c in close)}" if close else ""
    return NhlError(
        f"cue '{cue}' matches none of the model's {tree.num_classes} classes {where}{similar}{hint}"
    )


# ----------------------------------------------------------------------------------------- WordNet
class WordNetCues:
    """Resolves cues among a tree's classes with WordNet (the rules: see the module docstring)."""

    def __init__(self, tree: Tree) -> None:
        from nhlcli.hierarchy.wordnet_data import get_wordnet

        self.tree = tree
        self.wn = get_wordnet()
        self._synset: dict[str, Any] = {}
        self._ancestors: dict[str, set[Any]] = {}
        for cid in tree.class_ids:
            s = self._class_synset(cid)
            if s is None:
                continue
            self._synset[cid] = s
            self._ancestors[cid] = {s, *s.closure(_hypernyms)}

    def _class_synset(self, class_id: str) -> Any:
        if not WNID_RE.match(class_id):
            return None
        try:
            return self.wn.synset_from_pos_and_offset("n", int(class_id[1:]))
        except Exception:
            return None

    # ------------------------------------------------------------------ steps
    def resolve(self, cue: str) -> list[CueMatch]:
        found = self._tree_nodes(cue) + self._direct_matches(cue)
        if not found:
            found = self._associative(cue)
        if not found and " " in cue.strip() and not self._senses(cue):
            found = self._content_words(cue)
        if not found:
            raise no_match_error(self.tree, cue, "in WordNet", hint=" (or try --cue-source llm)")
        seen: set[str] = set()
        out = []
        for m in found:  # one explanation per class and cue: the first (most direct) one
            if m.class_id not in seen:
                seen.add(m.class_id)
                out.append(m)
        return out

    def _tree_nodes(self, cue: str) -> list[CueMatch]:
        out = []
        found = sorted(self.tree.find(cue), key=lambda n: not self.tree.is_class(n))
        for node_id in found:  # a class first: levelled trees repeat its name on its chain
            node = self.tree.node(node_id)
            for cid in self.tree.leaves_under(node_id):
                why = (
                    "is this class of the tree"
                    if cid == node_id
                    else f"under tree node '{node.name}' ({node_id})"
                )
                out.append(self._match(cid, cue, why))
        return out

    def _senses(self, text: str, pos: str | None = None) -> list[Any]:
        token = text.strip()
        if WNID_RE.match(token) or SYNSET_RE.match(token):
            from nhlcli.hierarchy.wordnet_data import synset_from_token

            try:
                return [synset_from_token(token)]
            except NhlError:
                return []
        lemma = "_".join(token.split())
        return list(self.wn.synsets(lemma, pos=pos) if pos else self.wn.synsets(lemma))

    def hits(self, sense: Any) -> list[str]:
        """Class ids (tree order) that are `sense` or its hyponyms."""
        return [cid for cid, anc in self._ancestors.items() if sense in anc]

    def direct_senses(self, text: str) -> list[tuple[Any, list[str]]]:
        """The noun senses of `text` that reach some class, frequent readings first (see step 2)."""
        senses = self._senses(text, pos="n")
        with_hits = [(s, h) for s in senses if (h := self.hits(s))]
        if len(with_hits) <= 1:
            return with_hits
        base = self._base_lemma(text)
        used = [(s, h) for s, h in with_hits if _lemma_count(s, base) > 0]
        return used or with_hits

    def _base_lemma(self, text: str) -> str:
        lemma = "_".join(text.strip().split())
        return normalize_name(self.wn.morphy(lemma, "n") or lemma)

    def _direct_matches(self, cue: str) -> list[CueMatch]:
        out = []
        for sense, class_ids in self.direct_senses(cue):
            for cid in class_ids:
                out.append(self._match(cid, cue, self._chain_text(sense, cid)))
        return out

    def _associative(self, cue: str) -> list[CueMatch]:
        senses = self._senses(cue)
        base = self._base_lemma(cue)
        used = [s for s in senses if _lemma_count(s, base) > 0]
        out: list[CueMatch] = []
        for sense in used or senses:
            head = f"{sense.name()} ({_gloss(sense)})"
            for noun in _related_nouns(sense):
                for cid in self.hits(noun):
                    chain = self._chain_text(noun, cid, gloss=False)
                    out.append(self._match(cid, cue, f"{head} → {chain}"))
            ancestors = set(sense.closure(_hypernyms))
            for word in self._gloss_words(sense, cue):
                for word_sense, class_ids in self.direct_senses(word):
                    if word_sense in ancestors or word_sense.min_depth() < MIN_GLOSS_DEPTH:
                        continue  # generalises the cue ("objects"), or too general ("animal")
                    called = [c for c in class_ids if self._called(c, word_sense, word)]
                    for cid in called or class_ids:
                        chain = self._chain_text(word_sense, cid, gloss=False)
                        out.append(self._match(cid, cue, f"{head} → '{word}' → {chain}"))
        return out

    def _content_words(self, cue: str) -> list[CueMatch]:
        out = []
        for word in _words(cue):
            if word in STOP_WORDS or self.wn.morphy(word, "n") is None:
                continue
            for sense, class_ids in self.direct_senses(word):
                for cid in class_ids:
                    chain = self._chain_text(sense, cid)
                    out.append(self._match(cid, cue, f"word '{word}' of the cue: {chain}"))
        return out

    # ------------------------------------------------------------------ helpers
    def _gloss_words(self, sense: Any, cue: str) -> list[str]:
        """Nouns of the sense's gloss, without stop words, the cue itself and the genus words."""
        skip = set(_words(cue)) | {w for lemma in sense.lemma_names() for w in _words(lemma)}
        for hyper in _hypernyms(sense):
            skip.update(w for lemma in hyper.lemma_names() for w in _words(lemma))
        out: list[str] = []
        for token in _words(sense.definition()):
            if token in STOP_WORDS or token in skip:
                continue
            noun = self.wn.morphy(token, "n")
            if noun is None or noun in skip or noun in STOP_WORDS or noun in out:
                continue
            out.append(noun)
        return out

    def _called(self, class_id: str, sense: Any, word: str) -> bool:
        """Whether the class, or an ancestor below `sense`, has a name containing `word`."""
        names = [self.tree.node(class_id).name]
        info = imagenet().by_wnid.get(class_id)
        if info is not None:
            names += [info.name, *info.synonyms]
        for syn in self._below(sense, class_id):
            names += syn.lemma_names()
        for name in names:
            for token in _words(name):
                if token == word or self.wn.morphy(token, "n") == word:
                    return True
        return False

    def _below(self, sense: Any, class_id: str) -> list[Any]:
        """The shortest chain of synsets strictly below `sense` down to the class (inclusive)."""
        target = self._synset[class_id]
        best: list[Any] | None = None
        for path in target.hypernym_paths():
            if sense in path:
                rest = path[path.index(sense) + 1 :]
                if best is None or len(rest) < len(best):
                    best = rest
        return best or []

    def _chain_text(self, sense: Any, class_id: str, gloss: bool = True) -> str:
        """`a kind of cat.n.01 (gloss): domestic cat > tabby`, or without the gloss
        `cat.n.01 > domestic cat > tabby`."""
        below = self._below(sense, class_id)
        about = f" ({_gloss(sense)})" if gloss else ""
        if not below:
            return f"is {sense.name()}{about}"
        from nhlcli.hierarchy.wordnet_data import display_name

        steps = [display_name(s) for s in below[:-1]] + [self.tree.node(class_id).name]
        if not gloss:
            return " > ".join([sense.name(), *steps])
        return f"a kind of {sense.name()}{about}: " + " > ".join(steps)

    def _match(self, class_id: str, cue: str, why: str) -> CueMatch:
        return CueMatch(class_id, self.tree.node(class_id).name, cue, why)


def _hypernyms(s: Any) -> list[Any]:
    return list(s.hypernyms()) + list(s.instance_hypernyms())


def _lemma_count(sense: Any, base: str) -> int:
    return sum(lemma.count() for lemma in sense.lemmas() if normalize_name(lemma.name()) == base)


def _related_nouns(sense: Any) -> list[Any]:
    out: list[Any] = []
    for lemma in sense.lemmas():
        for other in lemma.derivationally_related_forms():
            s = other.synset()
            if s.pos() == "n" and s != sense and s not in out:
                out.append(s)
    return out


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]


def _gloss(sense: Any) -> str:
    text = " ".join(str(sense.definition()).split())
    return text if len(text) <= GLOSS_CHARS else text[: GLOSS_CHARS - 1] + "…"


# --------------------------------------------------------------------------------------------- LLM
CUE_SYSTEM = (
    "You connect cues (a word, a sound, a description, a situation) to the image classes of a "
    "classifier. Given a cue and the list of classes, choose every class the cue clearly points to "
    "and no other; choose none when nothing fits. Answer with one JSON object and nothing else."
)


def cue_prompt(cue: str, labels: Sequence[str]) -> str:
    listing = "\n".join(f"- {label}" for label in labels)
    task = {"kind": "cue", "version": CUE_PROMPT_VERSION, "cue": cue, "classes": len(labels)}
    return (
        f'Cue: "{cue}"\n\n'
        f"Which of the {len(labels)} image classes below does this cue point to? For a sound, "
        "choose what makes it; for a description or a place, the things it describes. Copy each "
        "class label exactly as written and give a short reason.\n"
        'Answer as {"classes": [{"label": "<class label>", "reason": "..."}, ...]}.\n\n'
        f"Classes:\n{listing}\n\nTASK (JSON):\n{json.dumps(task, ensure_ascii=False)}"
    )


def cue_schema(labels: Sequence[str]) -> dict[str, Any]:
    from nhlcli.hierarchy.llm.schema import MAX_ENUM

    label: dict[str, Any] = {"type": "string"}
    if 0 < len(labels) <= MAX_ENUM:
        label["enum"] = list(labels)
    item = {
        "type": "object",
        "properties": {"label": label, "reason": {"type": "string"}},
        "required": ["label", "reason"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"classes": {"type": "array", "items": item}},
        "required": ["classes"],
        "additionalProperties": False,
    }


def check_cue_answer(data: Any, labels: Any) -> tuple[list[tuple[str, str]], list[str]]:
    """Parse {"classes": [{"label", "reason"}]} into (wnid, reason) pairs, or list the problems."""
    problems: list[str] = []
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        return [], ['the answer must be a JSON object {"classes": [...]}']
    out: list[tuple[str, str]] = []
    for i, item in enumerate(data["classes"]):
        if not isinstance(item, dict):
            problems.append(f"classes[{i}] is not an object with 'label' and 'reason'")
            continue
        resolved = labels.resolve(item.get("label"))
        if resolved.wnid is None:
            problems.append(f"classes[{i}]: {resolved.problem}")
            continue
        reason = item.get("reason")
        reason = " ".join(reason.split()) if isinstance(reason, str) else ""
        if resolved.wnid not in {w for w, _ in out}:
            out.append((resolved.wnid, reason))
    return out, problems


def _resolve_llm(
    cues: Iterable[str], tree: Tree, settings: LlmCueSettings
) -> tuple[list[list[CueMatch]], list[str]]:
    from functools import partial

    from nhlcli.hierarchy.classsets import ClassRef
    from nhlcli.hierarchy.llm.client import RetryPolicy
    from nhlcli.hierarchy.llm.labels import make_labels
    from nhlcli.hierarchy.llm.repair import ask_until_valid
    from nhlcli.hierarchy.llm.session import BuildReport, Session

    labels = make_labels([ClassRef(c.id, c.name) for c in tree.classes])
    report = BuildReport()
    session = Session(
        model=settings.model,
        base_url=settings.base_url,
        api_key_env=settings.api_key_env,
        timeout=settings.timeout,
        retry=RetryPolicy(),
        max_repairs=settings.max_repairs,
        cache_dir=settings.cache_dir,
        use_cache=settings.use_cache,
        refresh=False,
        progress=None,
        report=report,
    )
    out: list[list[CueMatch]] = []
    try:
        for cue in cues:
            request = CueRequest(
                "nhl_cue",
                f"resolving cue '{cue}'",
                cue_prompt(cue, labels.labels),
                cue_schema(labels.labels),
            )
            chosen = ask_until_valid(session, request, partial(check_cue_answer, labels=labels))
            if not chosen:
                raise no_match_error(tree, cue, f"according to model '{settings.model}'")
            out.append(
                [
                    CueMatch(wnid, tree.node(wnid).name, cue, f"{settings.model}: {reason}")
                    for wnid, reason in chosen
                ]
            )
    finally:
        session.close()
    notes = [
        f"llm {settings.model} at {session.server}: {report.steps} answer(s), "
        f"{report.cached_steps} from the cache, {report.requests} request(s)"
    ]
    return out, notes


class CueRequest(Request):
    """A cue question: the tree builder's request (cache key, repairs), the cue system prompt."""

    def messages(self) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": CUE_SYSTEM},
            {"role": "user", "content": self.prompt},
        ]
