"""Access to NLTK's WordNet corpus, with a clear message when its data is not installed."""

from __future__ import annotations

from functools import cache
from typing import Any

from nhlcli.errors import MissingWordNetError, NhlError

INSTALL_HINT = (
    "WordNet data for NLTK is not installed: run `python -m nltk.downloader wordnet` "
    "(or point NLTK_DATA at a folder holding corpora/wordnet.zip)"
)


def wordnet_location() -> str | None:
    """Where NLTK finds WordNet, or None."""
    import nltk

    for name in ("corpora/wordnet.zip", "corpora/wordnet"):
        try:
            return str(nltk.data.find(name))
        except LookupError:
            continue
    return None


@cache
def get_wordnet() -> Any:
    """The loaded WordNet corpus reader (NLTK), or MissingWordNetError with the install command."""
    try:
        import nltk  # noqa: F401
    except ImportError:  # pragma: no cover - nltk is a dependency
        raise MissingWordNetError("nltk is not installed: pip install nltk") from None
    if wordnet_location() is None:
        raise MissingWordNetError(INSTALL_HINT)
    try:
        return _open_reader()
    except LookupError:
        raise MissingWordNetError(INSTALL_HINT) from None
    except (AttributeError, TypeError, KeyError, IndexError, ValueError):
        # The fast loader overrides NLTK internals; if a future NLTK changes them, use its own
        # (slower) reader rather than fail.
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        return wordnet


def _open_reader() -> Any:
    """NLTK's own WordNet reader, loaded in about a quarter of the time.

    - NLTK builds, on every load, a map from the "wordnet" sense keys to the loaded version
      (index.sense read twice) that only its multilingual (OMW) functions use; nhl never calls
      them: skipped.
    - The lemma index (index.noun etc.) and the adjective-satellite scan read their files line by
      line through NLTK's seekable stream (slow); here each file is read in one go and split,
      filling the same structures. Synset names and lookups are unchanged (the tests check all
      1000 ImageNet names).
    """
    import warnings

    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _Reader(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet") -> None:
            return None

        def _whole(self, name: str) -> str:
            with self.open(name) as fp:
                return str(fp.read())

        def _scan_satellites(self) -> None:
            # data.adj line: offset lex_filenum ss_type ...; satellites have ss_type "s"
            sat = set()
            for line in self._whole("data.adj").splitlines():
                if line and not line.startswith(" "):  # licence lines start with spaces
                    f = line.split(None, 3)
                    if len(f) > 2 and f[2] == "s":
                        sat.add(int(f[0]))
            self.satellite_offsets = sat

        def _load_lemma_pos_offset_map(self) -> None:
            # index.pos line:
            # lemma pos synset_cnt p_cnt [ptr_symbol]*p_cnt sense_cnt tagsense_cnt offsets...
            lemma_map = self._lemma_pos_offset_map
            for suffix in self._FILEMAP.values():
                for line in self._whole(f"index.{suffix}").splitlines():
                    if not line or line.startswith(" "):
                        continue
                    tok = line.split()
                    n, first = int(tok[2]), 6 + int(tok[3])
                    offsets = list(map(int, tok[first : first + n]))
                    lemma_map[tok[0]][tok[1]] = offsets
                    if tok[1] == "a":
                        sat = self.satellite_offsets
                        lemma_map[tok[0]]["s"] = [o for o in offsets if o in sat]

    try:
        root = nltk.data.find("corpora/wordnet.zip/wordnet/")
    except LookupError:
        root = nltk.data.find("corpora/wordnet")
    with warnings.catch_warnings():  # "multilingual functions are not available": not needed here
        warnings.simplefilter("ignore")
        return _Reader(root, None)


def wnid(synset: Any) -> str:
    """ImageNet-style id of a noun synset: 'n' + 8-digit offset."""
    return f"{synset.pos()}{synset.offset():08d}"


def synset_from_wnid(wnid_text: str) -> Any:
    import warnings

    wn = get_wordnet()
    try:
        with warnings.catch_warnings():  # an unknown offset: NLTK warns and returns None
            warnings.simplefilter("ignore")
            found = wn.synset_from_pos_and_offset(wnid_text[0], int(wnid_text[1:]))
    except Exception:  # nltk raises several kinds here
        found = None
    if found is None:
        raise NhlError(f"'{wnid_text}' is not a WordNet noun synset id")
    return found


def synset_from_token(token: str) -> Any:
    """A noun synset from a wnid (`n02123045`) or a synset name (`tabby.n.01`)."""
    if token[:1] == "n" and token[1:].isdigit():
        return synset_from_wnid(token)
    wn = get_wordnet()
    try:
        s = wn.synset(token)
    except Exception:
        raise NhlError(f"'{token}' is not a WordNet synset") from None
    if s.pos() != "n":
        raise NhlError(f"'{token}' is not a noun synset")
    return s


def display_name(synset: Any) -> str:
    return str(synset.lemma_names()[0]).replace("_", " ")


def synset_ref(token: str):  # -> ClassRef (import kept local: classsets imports this module lazily)
    from nhlcli.hierarchy.classsets import ClassRef

    s = synset_from_token(token)
    return ClassRef(wnid(s), display_name(s))


def _noun_synset_or_none(class_id: str) -> Any:
    """The noun synset of a wnid, or None: not a wnid, no such synset, or no WordNet data."""
    if not (len(class_id) == 9 and class_id[0] == "n" and class_id[1:].isdigit()):
        return None
    try:
        return synset_from_wnid(class_id)
    except NhlError:  # MissingWordNetError included
        return None


def short_definition(class_id: str, limit: int) -> str | None:
    """The first clause of a noun synset's gloss (up to `;`), cut at a word to at most `limit`
    characters; None when `class_id` is not a WordNet noun id or WordNet data is missing."""
    synset = _noun_synset_or_none(class_id)
    if synset is None:
        return None
    clause = " ".join(str(synset.definition()).split(";")[0].split())
    if len(clause) <= limit:
        return clause or None
    return clause[: limit - 1].rsplit(" ", 1)[0].rstrip(",:") + "…"


def lemma_names(class_id: str) -> tuple[str, ...]:
    """A noun synset's names (`English springer`, `English springer spaniel`); () when
    `class_id` is not a WordNet noun id or WordNet data is missing."""
    synset = _noun_synset_or_none(class_id)
    if synset is None:
        return ()
    return tuple(str(n).replace("_", " ") for n in synset.lemma_names())
