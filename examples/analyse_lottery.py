"""Read back the lottery-ticket tree: a table, an accuracy-vs-sparsity plot, the tree drawing.

Restores the experiment slim (properties and tags only) and loads each payload just long
enough to read its accuracy and sparsity, so memory stays flat however big the tree gets.
Run `python examples/lottery_ticket.py` first.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display needed

import matplotlib.pyplot as plt
import pandas as pd

import dagger_wf as dg

UNRETRAINED = "pruned only"


def tag_value(node: dg.ExperimentState, prefix: str) -> str:
    """The value of the node's `prefix:value` tag, e.g. tag_value(node, "technique")."""
    return next(tag.split(":", 1)[1] for tag in node.tags if tag.startswith(f"{prefix}:"))


def measure(node: dg.ExperimentState) -> tuple[float, float]:
    """(accuracy, sparsity) from the node's payload, loaded only for the duration."""
    with node.lazy_load():
        return node.accuracy, node.sparsity


def rows(nodes: Iterable[dg.ExperimentState], follow_up: str) -> list[dict[str, Any]]:
    """One table row per node, labelled by its pruning tags and its follow-up."""
    table = []
    for node in nodes:
        accuracy, sparsity = measure(node)
        table.append(
            {
                "technique": tag_value(node, "technique"),
                "fraction": float(tag_value(node, "fraction")),
                "follow_up": follow_up,
                "sparsity": sparsity,
                "accuracy": accuracy,
                "sha": node.sha()[:12],
            }
        )
    return table


def collect(tree: dg.StaticExperimentTree) -> tuple[pd.DataFrame, float]:
    """Results of every pruned state and every leaf, plus the dense model's accuracy."""
    (dense,) = [node for node in tree.nodes.filter("!pruned") if node.parent is not None]
    dense_accuracy, _ = measure(dense)

    # Prune states are the pruned ones that no follow-up tag reached.
    just_pruned = (
        tree.nodes.filter("pruned") & tree.nodes.filter("!rewind") & tree.nodes.filter("!finetune")
    )
    table = rows(just_pruned, UNRETRAINED)
    table += rows([node for node in tree.nodes.filter("rewind") if not node.children], "rewind")
    lr_tags = sorted(
        {tag for node in tree.nodes.filter("lr:*") for tag in node.tags if tag.startswith("lr:")}
    )
    for lr_tag in lr_tags:
        finetuned = tree.nodes.filter("finetune") & tree.nodes.filter(lr_tag)
        table += rows(finetuned, f"finetune {lr_tag}")
    frame = pd.DataFrame(table)
    # Sort follow-ups in the order they were added, not alphabetically.
    order = list(dict.fromkeys(frame["follow_up"]))
    frame["follow_up"] = pd.Categorical(frame["follow_up"], categories=order, ordered=True)
    frame = frame.sort_values(["technique", "follow_up", "fraction"])
    return frame.reset_index(drop=True), dense_accuracy


def plot(frame: pd.DataFrame, dense_accuracy: float, path: Path) -> None:
    """One line per technique x follow-up; colour is the follow-up, line style the technique."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {follow_up: f"C{i}" for i, follow_up in enumerate(frame["follow_up"].cat.categories)}
    styles = {"magnitude": "-", "random": "--"}
    for (technique, follow_up), group in frame.groupby(["technique", "follow_up"], observed=True):
        group = group.sort_values("sparsity")
        ax.plot(
            group["sparsity"],
            group["accuracy"],
            styles.get(technique, ":"),
            marker="o",
            color=colours[follow_up],
            label=f"{technique}, {follow_up}",
        )
    ax.axhline(dense_accuracy, color="grey", linewidth=1, label="dense")
    ax.set_xlabel("sparsity of Linear weights")
    ax.set_ylabel("eval accuracy")
    ax.set_title("Lottery tickets on digits")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_loss_curves(tree: dg.StaticExperimentTree, path: Path) -> Path:
    """Training loss per epoch of the dense model and of each rewound ticket."""
    trained = tree.nodes.filter("!pruned") | tree.nodes.filter("rewind")
    with_loss = trained.filter(lambda node: "loss" in node.dagger.record.metrics)
    ax = tree.plot_metric("loss", with_loss)
    ax.set_xlabel("epoch")
    ax.set_title("Training loss: dense model and rewound tickets")
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=120)
    plt.close(ax.figure)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", default="runs/lottery", help="the experiment's directory")
    parser.add_argument("--out", help="where to write the figures (default: --directory)")
    args = parser.parse_args(argv)
    out = Path(args.out or args.directory)
    out.mkdir(parents=True, exist_ok=True)

    tree = dg.Experiment.restore(args.directory, slim=True).graph
    frame, dense_accuracy = collect(tree)
    print(f"dense accuracy: {dense_accuracy:.3f}")
    print(frame.to_string(index=False, float_format="{:.3f}".format))

    figure = out / "accuracy_vs_sparsity.png"
    plot(frame, dense_accuracy, figure)
    curves = plot_loss_curves(tree, out / "loss_curves.png")
    drawing = tree.draw(out / "tree.svg")
    print(f"wrote {figure}")
    print(f"wrote {curves}")
    print(f"wrote {drawing}")


if __name__ == "__main__":
    main()
