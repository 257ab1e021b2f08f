"""Python's cyclic garbage collector, paused while dagger_wf builds many objects at once.

Building thousands of states (a restore, the tasks of a run) allocates containers that
all survive; each allocation burst starts a collection that walks every one of them again,
which took about 40 % of a slim restore of 10 000 states. Only dagger_wf's own
bookkeeping runs inside: never a recipe, a Function or a load hook, whose garbage the
collector must still see.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside the block (it runs as usual afterwards). Left as it
    is where the collector is already off (by the user, or by an enclosing block)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
