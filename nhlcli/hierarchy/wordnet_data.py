"""Access to NLTK's WordNet corpus, with a clear message when its data is not installed."""

from __future__ import annotations

import os
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
    if os.environ.get("NHL_NO_WORDNET"):  # lets tests see the message without uninstalling data
        raise MissingWordNetError(INSTALL_HINT)
    if wordnet_location() is None:
        raise MissingWordNetError(INSTALL_HINT)
    from nltk.corpus import wordnet as wn

    try:
        wn.ensure_loaded()
    except LookupError:
        raise MissingWordNetError(INSTALL_HINT) from None
    return wn


def wnid(synset: Any) -> str:
    """ImageNet-style id of a noun synset: 'n' + 8-digit offset."""
    return f"{synset.pos()}{synset.offset():08d}"


def synset_from_wnid(wnid_text: str) -> Any:
    wn = get_wordnet()
    try:
        return wn.synset_from_pos_and_offset(wnid_text[0], int(wnid_text[1:]))
    except Exception:  # noqa: BLE001 - nltk raises several kinds here
        raise NhlError(f"'{wnid_text}' is not a WordNet noun synset id") from None


def synset_from_token(token: str) -> Any:
    """A noun synset from a wnid (`n02123045`) or a synset name (`tabby.n.01`)."""
    if token[:1] == "n" and token[1:].isdigit():
        return synset_from_wnid(token)
    wn = get_wordnet()
    try:
        s = wn.synset(token)
    except Exception:  # noqa: BLE001
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
