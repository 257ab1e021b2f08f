"""Drawing a tree with Graphviz (needs the ``dot`` program: Debian package graphviz)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from ..hashing import identity_of
from ..records import Status
from ..state import ExperimentState

_STATUS_COLOURS = {Status.DONE: "black", Status.FAILED: "red", Status.PENDING: "grey"}


def _label(node: ExperimentState) -> str:
    recipe = node.recipe
    step = "root" if recipe is None else identity_of(recipe).class_name
    lines = [f"{node.sha()[:10]}  {step}", *sorted(node.tags)]
    if node.status is Status.FAILED:
        lines.append("FAILED")
    return "\\n".join(line.replace('"', "'") for line in lines)


def render_tree(
    nodes: Iterable[ExperimentState],
    edge_map: Mapping[str, set[str]],
    path: Path,
    fmt: str | None,
) -> Path:
    """Write the states as boxes (key, step, tags; failed ones red) and their edges."""
    import graphviz

    fmt = fmt or path.suffix.lstrip(".") or "svg"
    dot = graphviz.Digraph(comment="dagger_wf experiment tree")
    dot.attr("node", shape="box", fontname="monospace", fontsize="10")
    for node in nodes:
        dot.node(node.sha(), _label(node), color=_STATUS_COLOURS.get(node.status, "black"))
    for parent, children in edge_map.items():
        for child in sorted(children):
            dot.edge(parent, child)
    path.parent.mkdir(parents=True, exist_ok=True)
    dot.render(outfile=path, format=fmt, cleanup=True)
    return path
