"""nhl: hierarchical image classifiers whose class branches can be cut out as experts."""

__version__ = "0.1.0"
