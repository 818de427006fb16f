"""The package version (one place; ``mashlib.__version__`` and the protocol sidecars read it)."""
__version__ = "0.1.0"
