"""Evaluation of checkpoints and experts: top-1 (over all classes or a subset), per-class accuracy,
top-down attention (given scales, or the paper's label-guided oracle protocol)."""
