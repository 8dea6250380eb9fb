"""Experts chosen by prior knowledge: cues (a word, a sound, a phrase) resolved to class sets."""
