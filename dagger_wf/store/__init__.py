"""On-disk layout, atomic writes, payload blobs and the per-state metadata."""

from .records import RecipeRecord, StateRecord
from .state_store import ExperimentStore

__all__ = ["ExperimentStore", "RecipeRecord", "StateRecord"]
