"""On-disk layout, atomic writes, payload blobs and the per-state metadata."""

from .state_store import ExperimentStore

__all__ = ["ExperimentStore"]
