"""The steps of the original dagger's tutorial, in its order, on dagger_wf.

Code written for facebookresearch/dagger runs here unchanged; this script walks through
what its tutorial does (a small synthetic data set and a CPU MLP instead of MNIST):

1. a state class with an ``__init__`` override, a ``seed`` property, dict-valued
   properties and an ``initialize_state(**kwargs)``;
2. ``exp.root``'s attributes right after ``spawn_new_tree`` (computed then);
3. recipes, one of them a ``Recipe`` subclass overriding ``__call__``; a pruning schema
   of ``functools.partial`` of torch's pruning functions as a property;
4. tags added later, through ``exp.root.to_promise()``;
5. the restored tree: leaves from ``edge_map``, ``lazy_load`` evaluation, a ``Function``
   of a lambda on restored states, ``draw(filename=..., format="png")``,
   ``to_graphviz()``, ``slim_loaded`` / ``restore()`` / ``deflate()`` /
   ``nodes.iterator``.

Run: ``python examples/original_tutorial.py --directory runs/tutorial``.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn.utils import prune

import dagger_wf as dg


class TutorialState(dg.ExperimentState):
    """A seeded MLP and its data, as the tutorial's MNIST state (smaller)."""

    PROPERTIES = ["seed", "model_config", "data_config"]
    NONHASHED_ATTRIBUTES = ["model", "train_data", "test_data"]

    def __init__(self, parent_sha: str | None = None, experiment_object: Any = None) -> None:
        super().__init__(parent_sha=parent_sha, experiment_object=experiment_object)

    def initialize_state(self, **kwargs: Any) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        size, features = self.data_config["size"], self.data_config["features"]
        inputs = torch.randn(size, features, generator=generator)
        labels = (inputs.sum(dim=1) > 0).long()
        cut = size * 4 // 5
        self.train_data = (inputs[:cut], labels[:cut])
        self.test_data = (inputs[cut:], labels[cut:])
        torch.manual_seed(self.seed)
        hidden = self.model_config["hidden"]
        self.model = torch.nn.Sequential(
            torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2)
        )


class Train(dg.Recipe):
    PROPERTIES = ["epochs", "lr"]

    def __init__(self, epochs: int, lr: float) -> None:
        self.epochs, self.lr = epochs, lr

    def run(self, state: TutorialState) -> TutorialState:
        optimiser = torch.optim.SGD(state.model.parameters(), lr=self.lr)
        inputs, labels = state.train_data
        for _ in range(self.epochs):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(state.model(inputs), labels).backward()
            optimiser.step()
        return state


class LoggedRecipe(dg.Recipe):
    """A recipe that overrides ``__call__``, as the tutorial's does: here to count the
    steps it defines before handing over to ``Recipe.__call__``."""

    defined = 0

    def __call__(self, experiment_state: Any) -> Any:
        LoggedRecipe.defined += 1
        return super().__call__(experiment_state)


class Prune(LoggedRecipe):
    """Prunes with a schema {(module index, parameter name): pruning function}."""

    PROPERTIES = ["schema"]

    def __init__(self, schema: dict[tuple[str, str], Any]) -> None:
        self.schema = schema

    def run(self, state: TutorialState) -> TutorialState:
        for (module, parameter), method in self.schema.items():
            method(state.model[int(module)], name=parameter)
            prune.remove(state.model[int(module)], parameter)
        return state


def accuracy(state: TutorialState) -> float:
    inputs, labels = state.test_data
    with torch.no_grad():
        return float((state.model(inputs).argmax(dim=1) == labels).float().mean())


def define(directory: Path) -> dg.Experiment:
    exp = dg.Experiment(directory, TutorialState)
    exp.spawn_new_tree(
        seed=7, model_config={"hidden": 16}, data_config={"size": 400, "features": 8}
    )
    # 2. The root's payload is there right after spawning (computed and stored now).
    print("root model:", exp.root.model[0])
    trained = Train(epochs=20, lr=0.5)(exp.root.to_promise())
    schemas = {
        "random": {("0", "weight"): functools.partial(prune.random_unstructured, amount=0.5)},
        "magnitude": {("0", "weight"): functools.partial(prune.l1_unstructured, amount=0.5)},
    }
    for name, schema in schemas.items():
        with exp.tag(f"prune:{name}"):
            Train(epochs=10, lr=0.5)(Prune(schema)(trained))
    return exp


def analyse(directory: Path) -> None:
    restored = dg.Experiment.restore(directory, slim=True)
    graph = restored.graph
    leaves = [key for key, children in graph.edge_map.items() if not children]
    print(f"{len(graph)} states, {len(leaves)} leaves")
    for key in leaves:  # 5. lazy_load: each payload loaded, used, dropped
        node = graph.node(key)
        with node.lazy_load():
            print(f"  {key[:12]} {sorted(node.tags)} accuracy {accuracy(node):.3f}")
        assert node.slim_loaded
    # A Function of a lambda on the restored states; run() computes nothing new.
    seen: list[str] = []
    for key in leaves:
        dg.Function(lambda state: seen.append(state.sha()))(graph.node(key).to_promise())
    print(restored.run().summary(), f"(the lambda saw {len(seen)} states)")
    graph.root.restore()
    print("root restored:", not graph.root.slim_loaded)
    graph.root.deflate()
    print("root deflated:", graph.root.slim_loaded)
    sizes = [node.model[0].weight.numel() for node in graph.nodes.iterator]
    print("weights per state:", sizes)
    print("drawing:", graph.draw(filename=str(directory / "graph"), format="png"))
    print("graphviz source lines:", len(graph.to_graphviz().source.splitlines()))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", type=Path, default=Path("runs/tutorial"))
    directory = parser.parse_args(argv).directory
    exp = define(directory)
    print(exp.run().summary())
    # 4. Tags added later, through the root's promise: nothing is computed again.
    with exp.tag("later"):
        Train(epochs=20, lr=0.5)(exp.root.to_promise())
    print(exp.run().summary(), f"({LoggedRecipe.defined} steps defined by LoggedRecipe)")
    analyse(directory)


if __name__ == "__main__":
    main()
