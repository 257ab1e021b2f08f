"""Small experiment trees shared by the tests (importable by worker processes)."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import dagger_wf as dg


class State(dg.ExperimentState):
    PROPERTIES = ["dataset_name", "model_name"]
    NONHASHED_ATTRIBUTES = ["data", "weights"]

    def initialize_state(self, **kwargs):
        self.data = list(range(8))
        self.weights = [0.0] * 4


class Train(dg.Recipe):
    PROPERTIES = ["nb_epochs", "lr"]

    def __init__(self, nb_epochs, lr):
        self.nb_epochs, self.lr = nb_epochs, lr

    def run(self, state):
        noise = random.random()
        state.weights = [w + self.lr * self.nb_epochs + noise for w in state.weights]
        return state


class Prune(dg.Recipe):
    PROPERTIES = ["technique", "fraction"]

    def __init__(self, technique, fraction):
        self.technique, self.fraction = technique, fraction

    def run(self, state):
        kept = int(len(state.weights) * (1 - self.fraction))
        state.weights = state.weights[:kept] + [0.0] * (len(state.weights) - kept)
        return state


class Explode(dg.Recipe):
    PROPERTIES = ["message"]

    def __init__(self, message="boom"):
        self.message = message

    def run(self, state):
        raise ValueError(self.message)


class ReturnNothing(dg.Recipe):
    def run(self, state):
        state.weights = []


class RecordCollectorThresholds(dg.Recipe):
    """Keeps the garbage collector's thresholds it ran under as the state's weights."""

    def run(self, state):
        import gc

        state.weights = list(gc.get_threshold())
        return state


def evaluate(state):
    """A Function: reads the state, changes nothing."""
    return sum(state.weights)


def build_lottery_tree(
    directory: Path,
) -> tuple[dg.Experiment, dict[str, dg.ExperimentStatePromise]]:
    """The issue's example tree: 1 root, 2 trained, 2 pruned states."""
    exp = dg.Experiment(directory, state_class=State)
    root = exp.spawn_new_tree(dataset_name="digits", model_name="mlp")
    promises = {"root": root}
    for lr in [0.01, 0.1]:
        with exp.tag(f"lr:{lr}"):
            trained = Train(3, lr)(root)
            dg.Function(evaluate)(trained)
            with exp.tag("pruned"):
                promises[f"pruned {lr}"] = Prune("magnitude", 0.5)(trained)
            promises[f"trained {lr}"] = trained
    return exp, promises


class DieHard(dg.Recipe):
    """Kills its own worker process, as the kernel's out-of-memory killer would."""

    def run(self, state):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


class Sleep(dg.Recipe):
    PROPERTIES = ["seconds"]

    def __init__(self, seconds):
        self.seconds = seconds

    def run(self, state):
        import time

        time.sleep(self.seconds)
        return state


def record_visit(state):
    """A Function that leaves a trace: one line per call in $DAGGER_TEST_VISITS."""
    import os

    with open(os.environ["DAGGER_TEST_VISITS"], "a") as visits:
        visits.write(state.sha() + "\n")


class UnpicklableError(Exception):
    """An exception that cannot travel between processes."""

    def __init__(self, handle):
        super().__init__("holds an open file")
        self.handle = handle

    def __reduce__(self):
        raise TypeError("cannot pickle an open file")


class RaiseUnpicklable(dg.Recipe):
    def run(self, state):
        raise UnpicklableError(open(__file__))  # noqa: SIM115 - the open file is the point


class FailsUntil(dg.Recipe):
    """Fails until the file ``switch`` exists: a bug fixed outside the key."""

    PROPERTIES = ["switch"]

    def __init__(self, switch):
        self.switch = str(switch)

    def run(self, state):
        from pathlib import Path

        if not Path(self.switch).exists():
            raise ValueError("not fixed yet")
        return state


class Impure(dg.Recipe):
    """Depends on the wall clock: not a function of its parent and seed."""

    def run(self, state):
        import time

        state.weights = [time.perf_counter_ns(), *state.weights[1:]]
        return state


class Scale(dg.Recipe):
    """Deterministic: the same bytes from any runner, threads included."""

    PROPERTIES = ["factor"]

    def __init__(self, factor):
        self.factor = factor

    def run(self, state):
        state.weights = [w + self.factor * (i + 1) for i, w in enumerate(state.weights)]
        return state


class DrawsRandom(dg.Recipe):
    """Stochastic: draws from Python's generator and from one seeded by state.dagger.seed."""

    def run(self, state):
        import random

        import numpy as np

        state.weights = [random.random(), float(np.random.default_rng(state.dagger.seed).random())]
        return state


class Weights(dg.Recipe):
    """Large weights (stored as a blob), the same bytes for the same ``size``."""

    PROPERTIES = ["size"]

    def __init__(self, size):
        self.size = size

    def run(self, state):
        import numpy as np

        state.weights = np.full(100_000, float(self.size))
        return state


class Visit(dg.Recipe):
    """Sleeps, then leaves a trace: one line per computation in $DAGGER_TEST_VISITS."""

    PROPERTIES = ["seconds", "branch"]

    def __init__(self, seconds, branch):
        self.seconds, self.branch = seconds, branch

    def run(self, state):
        import os
        import time

        time.sleep(self.seconds)
        with open(os.environ["DAGGER_TEST_VISITS"], "a") as visits:
            visits.write(state.sha() + "\n")
        return state


def gather(state):
    """A Function that returns once $DAGGER_TEST_PROCESSES processes run it at once (each
    leaves a file in $DAGGER_TEST_GATHER): runs that overlap in time, however loaded the
    machine is."""
    import os
    import time
    from pathlib import Path

    gathered = Path(os.environ["DAGGER_TEST_GATHER"])
    (gathered / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(gathered.iterdir())) < int(os.environ["DAGGER_TEST_PROCESSES"]):
        if time.monotonic() > deadline:
            raise TimeoutError("the other processes never ran this step")
        time.sleep(0.05)


class Grow(dg.Recipe):
    """Gives the state its own array of ``kib`` KiB (stored as a blob from 64 KiB on) and
    leaves a trace: one line per computation in $DAGGER_TEST_VISITS."""

    PROPERTIES = ["step", "kib"]

    def __init__(self, step, kib):
        self.step, self.kib = step, kib

    def run(self, state):
        import os

        import numpy as np

        state.weights = np.full(self.kib * 128, float(self.step))
        with open(os.environ["DAGGER_TEST_VISITS"], "a") as visits:
            visits.write(state.sha() + "\n")
        return state


def fill_disk(filler: Path, leave_bytes: int = 0) -> None:
    """Grow the file ``filler`` until its disk is full, then give back ``leave_bytes``."""
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(descriptor, bytes(4096))
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
    finally:
        os.close(descriptor)
    os.truncate(filler, max(0, filler.stat().st_size - leave_bytes))


class FillDisk(dg.Recipe):
    """Fills the disk holding ``filler`` (as another program might mid-run), then fails."""

    PROPERTIES = ["filler"]

    def __init__(self, filler):
        self.filler = str(filler)

    def run(self, state):
        fill_disk(Path(self.filler))
        raise ValueError("the recipe failed after the disk filled up")


class Arrays(dg.ExperimentState):
    """A state whose payload has blobs: ``data``, shared by every state, and ``own``."""

    PROPERTIES = ["name"]
    NONHASHED_ATTRIBUTES = ["data", "own", "weights"]

    def initialize_state(self, **kwargs):
        import numpy as np

        self.data = np.arange(20_000, dtype=np.float64)  # 160 KB: a blob
        self.own = np.zeros(10_000)
        self.weights = np.zeros(4)  # inline


class Shift(dg.Recipe):
    """Gives its state an ``own`` blob of its own, and seeded random weights; logs each
    computation in $DAGGER_TEST_VISITS if it is set."""

    PROPERTIES = ["amount"]

    def __init__(self, amount):
        self.amount = amount

    def run(self, state):
        import os

        import numpy as np

        if os.environ.get("DAGGER_TEST_VISITS"):
            with open(os.environ["DAGGER_TEST_VISITS"], "a") as visits:
                visits.write(state.sha() + "\n")

        state.own = np.full(10_000, float(self.amount))
        state.weights = state.weights + self.amount + np.random.random(4)
        return state


def build_array_tree(directory: Path, extra_child: bool = False):
    """root -> shifted (the state the tests damage) -> below; root -> beside.
    ``extra_child``: also a new child of ``shifted``, not computed yet."""
    exp = dg.Experiment(directory, state_class=Arrays)
    root = exp.spawn_new_tree(name="arrays")
    shifted = Shift(1)(root)
    promises = {"root": root, "shifted": shifted, "below": Shift(2)(shifted)}
    promises["beside"] = Shift(3)(root)
    if extra_child:
        promises["new child"] = Shift(4)(shifted)
    return exp, promises


class Fit(dg.Recipe):
    """Logs a falling loss each epoch: a metric with steps, as training does."""

    PROPERTIES = ["lr"]

    def __init__(self, lr):
        self.lr = lr

    def run(self, state):
        for epoch in range(3):
            state.dagger.log_metric("loss", self.lr / (epoch + 1))
        return state


class WaitFor(dg.Recipe):
    """Runs until the file ``gate`` exists: a state that stays running while a test looks."""

    PROPERTIES = ["gate"]

    def __init__(self, gate):
        self.gate = str(gate)

    def run(self, state):
        import time
        from pathlib import Path

        while not Path(self.gate).exists():
            time.sleep(0.05)
        return state
