"""Seeds derived from state keys, so a stochastic recipe gives the same bytes on any runner."""

from __future__ import annotations

import hashlib
import random
import sys


def seed_from_key(key: str, global_seed: int | None = None) -> int:
    """A 32-bit seed (numpy's limit) from the state's key, or from the key and a seed the
    user gave for the whole run (``exp.run(seed=...)``, ``dagger-wf run --seed``)."""
    if global_seed is None:
        return int(key[:8], 16)
    return int(hashlib.sha256(f"{global_seed}/{key}".encode()).hexdigest()[:8], 16)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random`` and, if the user imported them, numpy and torch.

    The generators are process-global: with the threads scheduler two recipes running at
    once share them, so bit-for-bit reproducibility needs processes or one thread.
    """
    random.seed(seed)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        # torch.manual_seed() formats the call stack on every call (for its lazy CUDA
        # seeding), which costs more than a trivial recipe; seed the generators directly.
        torch.default_generator.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
