"""Read back the lottery-ticket study: a table, accuracy against remaining weights, loss curves.

Restores the experiment slim (properties and tags only) and loads each payload just long
enough to read its accuracy and sparsity, so memory stays flat however big the tree gets.
Every configuration ran once per seed: the table and the plots give the mean and the
spread over seeds. Run `python examples/lottery_ticket.py` first.
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
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

import dagger_wf as dg

NOT_RETRAINED = "pruned, not retrained"
REWOUND = "rewound to init and retrained (ticket)"
DENSE = "dense training, not pruned"
UNPRUNED = "not pruned"
TECHNIQUES = {"magnitude": "magnitude pruning", "random": "random pruning"}


def finetuned(lr: str) -> str:
    return f"fine-tuned at learning rate {lr}"


def tag_value(node: dg.ExperimentState, prefix: str) -> str:
    """The value of the node's `prefix:value` tag, e.g. tag_value(node, "technique")."""
    return next(tag.split(":", 1)[1] for tag in node.tags if tag.startswith(f"{prefix}:"))


def describe(node: dg.ExperimentState, schedule: str) -> dict[str, Any]:
    """One row: the node's configuration in words, its seed, and what it measured."""
    with node.lazy_load():  # the payload, loaded only for the duration
        accuracy, sparsity = node.accuracy, node.sparsity
    pruned = "pruned" in node.tags
    return {
        "technique": TECHNIQUES[tag_value(node, "technique")] if pruned else UNPRUNED,
        "schedule": schedule,
        "fraction pruned": float(tag_value(node, "fraction")) if pruned else 0.0,
        "seed": int(tag_value(node, "seed")),
        "weights left": 1.0 - sparsity,
        "accuracy": accuracy,
        "key": node.sha(),
    }


def collect(tree: dg.StaticExperimentTree) -> pd.DataFrame:
    """One row per result: the dense models, every pruned state and every leaf."""
    nodes = tree.nodes
    dense = nodes.filter("!pruned").filter(
        lambda node: node.recipe is not None and node.recipe.class_name == "Train"
    )
    rows = [describe(node, DENSE) for node in dense]
    # Prune states are the pruned ones that no follow-up tag reached.
    just_pruned = nodes.filter("pruned") & nodes.filter("!rewind") & nodes.filter("!finetune")
    rows += [describe(node, NOT_RETRAINED) for node in just_pruned]
    rows += [describe(node, REWOUND) for node in nodes.filter("rewind") if not node.children]
    for node in nodes.filter("finetune"):
        rows.append(describe(node, finetuned(tag_value(node, "lr"))))
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread over seeds of each technique x schedule x fraction."""
    # Techniques and schedules in the order collected (dense first), not alphabetically.
    order = list(dict.fromkeys(frame["schedule"]))
    techniques = list(dict.fromkeys(frame["technique"]))
    grouped = frame.groupby(["technique", "schedule", "fraction pruned"], sort=False)
    summary = grouped.agg(
        weights_left=("weights left", "mean"),
        accuracy=("accuracy", "mean"),
        sd=("accuracy", "std"),
        lowest=("accuracy", "min"),
        highest=("accuracy", "max"),
        seeds=("seed", "nunique"),
    ).reset_index()
    summary["sd"] = summary["sd"].fillna(0.0)  # one seed: no spread
    summary["schedule"] = pd.Categorical(summary["schedule"], categories=order, ordered=True)
    summary["technique"] = pd.Categorical(summary["technique"], categories=techniques, ordered=True)
    summary = summary.sort_values(["technique", "schedule", "fraction pruned"])
    return summary.rename(columns={"weights_left": "weights left"}).reset_index(drop=True)


def schedule_colours(summary: pd.DataFrame) -> dict[str, str]:
    return {schedule: f"C{i}" for i, schedule in enumerate(summary["schedule"].cat.categories)}


def percent_axis(ax: Any, fractions: Iterable[float]) -> None:
    """A log x-axis of weights left, 100 % on the left, ticked at the values measured."""
    ticks = sorted(set(fractions), reverse=True)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.0%}"))
    ax.set_xlim(max(ticks) * 1.25, min(ticks) / 1.25)
    ax.set_xlabel("Linear weights left (log scale)")
    ax.grid(True, which="major", alpha=0.3)


def plot_accuracy(summary: pd.DataFrame, path: Path) -> None:
    """One panel per technique, one line per schedule: mean accuracy, bars ± 1 s.d."""
    dense = summary[summary["schedule"] == DENSE].iloc[0]
    pruned = summary[summary["schedule"] != DENSE]
    colours = schedule_colours(summary)
    techniques = list(dict.fromkeys(pruned["technique"]))
    fig, axes = plt.subplots(1, len(techniques), figsize=(11, 4.5), sharey=True)
    for ax, technique in zip(axes, techniques, strict=True):
        ax.axhspan(
            dense["accuracy"] - dense["sd"],
            dense["accuracy"] + dense["sd"],
            color="grey",
            alpha=0.15,
        )
        ax.axhline(dense["accuracy"], color="grey", linewidth=1, label=f"{DENSE} (100 %)")
        of_technique = pruned[pruned["technique"] == technique]
        for schedule, group in of_technique.groupby("schedule", observed=True, sort=True):
            group = group.sort_values("weights left", ascending=False)
            ax.errorbar(
                group["weights left"],
                group["accuracy"],
                yerr=group["sd"],
                marker="o",
                capsize=3,
                color=colours[schedule],
                label=schedule,
            )
        percent_axis(ax, pruned["weights left"])
        ax.set_title(technique)
    axes[0].set_ylabel("eval accuracy")
    seeds = int(summary["seeds"].min())
    plural = "s" if seeds != 1 else ""
    fig.suptitle(f"Lottery tickets on digits: mean ± 1 s.d. over {seeds} seed{plural}")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_loss_curves(tree: dg.StaticExperimentTree, frame: pd.DataFrame, path: Path) -> Path:
    """Training loss per epoch from the initial weights: the dense models and the tickets.

    One panel per technique; one line per fraction (the mean over seeds) with the range
    over seeds shaded, coloured from light (least pruned) to dark (most pruned).
    """
    trained = frame[frame["schedule"].isin([DENSE, REWOUND])]
    by_key = trained.set_index("key")
    losses = tree.metric_history("loss", [tree.node_map[key] for key in trained["key"]])
    losses = losses.join(by_key[["technique", "fraction pruned"]], on="key")
    fractions = sorted(set(trained["fraction pruned"]) - {0.0})
    shades = plt.get_cmap("viridis_r")
    techniques = [name for name in dict.fromkeys(trained["technique"]) if name != UNPRUNED]
    fig, axes = plt.subplots(1, len(techniques), figsize=(11, 4.5), sharey=True)
    for ax, technique in zip(axes, techniques, strict=True):
        curves = [(UNPRUNED, 0.0, "dense model (100 % of weights)", "black")]
        curves += [
            (
                technique,
                fraction,
                f"ticket, {1 - fraction:.0%} of weights left",
                shades(0.15 + 0.7 * i / max(len(fractions) - 1, 1)),
            )
            for i, fraction in enumerate(fractions)
        ]
        for curve_technique, fraction, label, colour in curves:
            chosen = losses[
                (losses["technique"] == curve_technique) & (losses["fraction pruned"] == fraction)
            ]
            per_epoch = chosen.groupby("step")["value"].agg(["mean", "min", "max"])
            ax.plot(per_epoch.index, per_epoch["mean"], marker=".", color=colour, label=label)
            ax.fill_between(
                per_epoch.index, per_epoch["min"], per_epoch["max"], color=colour, alpha=0.15
            )
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"{technique}, rewound tickets")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("training loss (log scale)")
    fig.suptitle("Training loss from the initial weights: mean over seeds, range shaded")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", default="runs/lottery", help="the experiment's directory")
    parser.add_argument("--out", help="where to write the figures (default: --directory)")
    args = parser.parse_args(argv)
    out = Path(args.out or args.directory)
    out.mkdir(parents=True, exist_ok=True)

    tree = dg.Experiment.restore(args.directory, slim=True).graph
    frame = collect(tree)
    summary = summarise(frame)
    dense = summary[summary["schedule"] == DENSE].iloc[0]
    print(
        f"dense accuracy: {dense['accuracy']:.3f} ± {dense['sd']:.3f} (s.d. over "
        f"{dense['seeds']} seeds)"
    )
    print(summary.to_string(index=False, float_format="{:.3f}".format))
    frame.to_csv(out / "results.csv", index=False)

    figure = out / "accuracy_vs_sparsity.png"
    plot_accuracy(summary, figure)
    curves = plot_loss_curves(tree, frame, out / "loss_curves.png")
    drawing = tree.draw(out / "tree.svg")
    print(f"wrote {out / 'results.csv'} (one row per state and seed)")
    print(f"wrote {figure}")
    print(f"wrote {curves}")
    print(f"wrote {drawing}")


if __name__ == "__main__":
    main()
