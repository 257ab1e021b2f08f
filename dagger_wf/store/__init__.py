"""On-disk layout, atomic writes, payload blobs and the per-state metadata."""

from .persist import fill_payload, load_state, store_state
from .records import StateRecord
from .state_store import ExperimentStore

__all__ = ["ExperimentStore", "StateRecord", "fill_payload", "load_state", "store_state"]
