"""The package version, at the base so that every layer (the CLI, saved archives) can read it."""

__all__ = ["__version__"]

__version__ = "0.1.0"
