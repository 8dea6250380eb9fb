"""Cues resolved offline with WordNet (see `nhlcli.cues.resolve` for the rules)."""

from __future__ import annotations

import re
from typing import Any

from nhlcli.cues.resolve import CueMatch, no_match_error
from nhlcli.errors import NhlError
from nhlcli.hierarchy.classsets import SYNSET_RE, WNID_RE, imagenet, normalize_name
from nhlcli.hierarchy.tree import Tree

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
