"""The package's version: a leaf, so any layer (the Snakefile emitter too) can read it."""

__version__ = "0.1.0"
