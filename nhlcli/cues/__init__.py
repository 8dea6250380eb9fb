"""Cues: prior knowledge (a word, a sound, a phrase) resolved to the class set of an expert.

`resolve.py` holds the types and `resolve_cues`; `wordnet.py` and `llm.py` the two ways to
resolve. The experts themselves are cut out by `nhlcli.model.cutout`.
"""
