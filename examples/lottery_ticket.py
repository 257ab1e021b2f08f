"""Lottery-ticket experiment on scikit-learn's digits, written as a dagger_wf tree.

    root (digits, mlp)
      -> Initialise(seed) -> Train           for 3 seeds: 3 independent studies
        -> Prune(technique, fraction)        for 2 techniques x 3 fractions
            -> Rewind -> Train               retrain the ticket from the initial weights
            -> FineTune(lr)                  keep the trained weights, for 2 learning rates

A seed changes the initial weights, and with them every key below (so the batch order and
random pruning too: their generators are seeded from the state's key), not the data
split, so the analysis can give the spread over seeds of each configuration. Every state is cached
by content, so a second run only re-evaluates. Run from the repo
root with `python examples/lottery_ticket.py`, then `python examples/analyse_lottery.py`.
Keys cover the recipe classes' source but not lottery_models.py: after editing a helper
there, run into a fresh --directory.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

sys.path.insert(0, str(Path(__file__).parent))  # lottery_models sits next to this file

import lottery_models as lm

import dagger_wf as dg

TRAIN_LR = 0.1
TECHNIQUES = ["magnitude", "random"]
FRACTIONS = [0.5, 0.8, 0.95]
FINETUNE_LRS = [0.1, 0.01]
SEEDS = 3


class LotteryState(dg.ExperimentState):
    """A model with its data, the masks pruning left, and how well it does."""

    PROPERTIES: ClassVar[list[str]] = ["dataset_name", "model_name"]
    # Payload only: measured values live here too, since they must not change the key.
    NONHASHED_ATTRIBUTES: ClassVar[list[str]] = [
        "train_data",
        "eval_data",
        "model",
        "initial_weights",
        "masks",
        "accuracy",
        "sparsity",
        "history",
    ]

    def initialize_state(self, **kwargs: Any) -> None:
        if self.dataset_name != "digits":
            raise ValueError(f"unknown dataset {self.dataset_name!r}; expected 'digits'")
        self.train_data, self.eval_data = lm.load_digits_split()
        self.model = lm.build_mlp(self.model_name)
        # Rewinding returns surviving weights to these values (the "winning ticket" init).
        self.initial_weights = lm.snapshot_weights(self.model)
        self.masks = {}
        self.history = []
        record_metrics(self)


def state_generator(state: LotteryState) -> torch.Generator:
    """A random generator private to this state, seeded from its key.

    The framework seeds torch's global RNG from the key too, but under the threads
    scheduler recipes running side by side share that RNG and interleave their draws, so
    results would change from run to run. (The root's weight init may use the global RNG:
    nothing else runs while the root is built.)
    """
    return torch.Generator().manual_seed(int(state.sha()[:16], 16))


def record_metrics(state: LotteryState) -> None:
    """Store accuracy and sparsity in the payload, and log them as metrics."""
    state.accuracy = lm.evaluate(state.model, state.eval_data)
    state.sparsity = lm.sparsity(state.model)
    state.dagger.log_metric("eval_accuracy", state.accuracy)
    state.dagger.log_metric("sparsity", state.sparsity)


class Initialise(dg.Recipe):
    """Draw fresh initial weights from `seed`: the start of one seed's study."""

    PROPERTIES: ClassVar[list[str]] = ["seed"]

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def run(self, state: LotteryState) -> LotteryState:
        torch.set_num_threads(1)
        lm.initialise(state.model, torch.Generator().manual_seed(self.seed))
        state.initial_weights = lm.snapshot_weights(state.model)
        record_metrics(state)
        return state


class Train(dg.Recipe):
    """Train with SGD; pruned weights (if any) stay at zero."""

    PROPERTIES: ClassVar[list[str]] = ["nb_epochs", "lr"]

    def __init__(self, nb_epochs: int, lr: float) -> None:
        self.nb_epochs = nb_epochs
        self.lr = lr

    def run(self, state: LotteryState) -> LotteryState:
        torch.set_num_threads(1)  # recipes run side by side under the threads scheduler
        state.history = lm.train_epochs(
            state.model,
            state.train_data,
            self.nb_epochs,
            self.lr,
            masks=state.masks,
            generator=state_generator(state),
        )
        for epoch, (loss, train_accuracy) in enumerate(state.history):
            state.dagger.log_metric("loss", loss, step=epoch)
            state.dagger.log_metric("train_accuracy", train_accuracy, step=epoch)
        record_metrics(state)
        return state


class FineTune(Train):
    """Continue training the pruned weights as they are (no rewinding).

    Same computation as Train; a separate recipe so the tree and the key say which it is.
    """


class Prune(dg.Recipe):
    """Zero `fraction` of all Linear weights, chosen by `technique`, and keep the masks."""

    PROPERTIES: ClassVar[list[str]] = ["technique", "fraction"]

    def __init__(self, technique: str, fraction: float) -> None:
        self.technique = technique
        self.fraction = fraction

    def run(self, state: LotteryState) -> LotteryState:
        torch.set_num_threads(1)
        state.masks = lm.prune_model(
            state.model, self.technique, self.fraction, generator=state_generator(state)
        )
        record_metrics(state)
        return state


class Rewind(dg.Recipe):
    """Reset the surviving weights to their values at the root, keeping the masks."""

    PROPERTIES: ClassVar[list[str]] = []

    def run(self, state: LotteryState) -> LotteryState:
        torch.set_num_threads(1)
        lm.rewind(state.model, state.initial_weights, state.masks)
        record_metrics(state)
        return state


def evaluate_state(state: LotteryState) -> dict[str, float]:
    """Re-measure a state on every run without changing it, and say what was found."""
    accuracy = lm.evaluate(state.model, state.eval_data)
    sparsity = lm.sparsity(state.model)
    tags = ", ".join(state.tags)
    print(f"{state.sha()[:12]} [{tags}] accuracy={accuracy:.3f} sparsity={sparsity:.3f}")
    return {"accuracy": accuracy, "sparsity": sparsity}


def build_experiment(
    directory: str | Path, epochs: int = 8, finetune_epochs: int = 4, seeds: int = SEEDS
) -> dg.Experiment:
    """Define the whole tree (nothing runs until `exp.run()`)."""
    exp = dg.Experiment(directory, state_class=LotteryState)
    root = exp.spawn_new_tree(dataset_name="digits", model_name="mlp")
    for seed in range(seeds):
        with exp.tag(f"seed:{seed}"):
            define_study(exp, Initialise(seed)(root), epochs, finetune_epochs)
    return exp


def define_study(
    exp: dg.Experiment, initialised: dg.ExperimentStatePromise, epochs: int, finetune_epochs: int
) -> None:
    """One seed's study: dense training, then every technique x fraction x follow-up."""
    trained = Train(epochs, TRAIN_LR)(initialised)
    dg.Function(evaluate_state)(trained)
    for technique, fraction in itertools.product(TECHNIQUES, FRACTIONS):
        with (
            exp.tag("pruned"),
            exp.tag(f"technique:{technique}"),
            exp.tag(f"fraction:{fraction}"),
        ):
            pruned = Prune(technique, fraction)(trained)
            with exp.tag("rewind"):
                # Same budget as the dense training: a ticket is trained from its init.
                retrained = Train(epochs, TRAIN_LR)(Rewind()(pruned))
                dg.Function(evaluate_state)(retrained)
            for lr in FINETUNE_LRS:
                with exp.tag("finetune"), exp.tag(f"lr:{lr}"):
                    finetuned = FineTune(finetune_epochs, lr)(pruned)
                    dg.Function(evaluate_state)(finetuned)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", default="runs/lottery", help="where states are cached")
    parser.add_argument(
        "--scheduler", default="threads", choices=["threads", "single-threaded", "processes"]
    )
    parser.add_argument("--epochs", type=int, default=8, help="dense training and retraining")
    parser.add_argument("--finetune-epochs", type=int, default=4)
    parser.add_argument(
        "--seeds", type=int, default=SEEDS, help="independent studies, seeds 0 to N-1"
    )
    parser.add_argument(
        "--emit-snakefile",
        metavar="PATH",
        nargs="?",
        const="",
        help="write a Snakemake workflow (default workflow/Snakefile) instead of running "
        "here; then run `snakemake --profile profiles/local` (or profiles/slurm)",
    )
    args = parser.parse_args(argv)

    exp = build_experiment(args.directory, args.epochs, args.finetune_epochs, args.seeds)
    if args.emit_snakefile is not None:
        print(f"wrote {exp.emit_snakefile(args.emit_snakefile or None)}")
        return
    start = time.perf_counter()
    report = exp.run(scheduler=args.scheduler)
    print(f"{report.summary()}, in {time.perf_counter() - start:.1f}s; store: {args.directory}")


if __name__ == "__main__":
    main()
