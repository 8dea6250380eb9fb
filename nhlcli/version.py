"""The version of nhl (`nhl --version`, built trees' provenance); pyproject.toml says the same."""

__version__ = "0.1.0"
