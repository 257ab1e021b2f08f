"""Drawing a tree with Graphviz (needs the ``dot`` program: Debian package graphviz)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tree import StaticExperimentTree

_STATUS_COLOURS = {"done": "black", "failed": "red", "pending": "grey"}


def _label(node: object) -> str:
    recipe = node.recipe
    step = "root" if recipe is None else getattr(recipe, "class_name", type(recipe).__name__)
    lines = [f"{node.sha()[:10]}  {step}", *sorted(node.tags)]
    if node.status == "failed":
        lines.append("FAILED")
    return "\\n".join(line.replace('"', "'") for line in lines)


def render_tree(tree: StaticExperimentTree, path: Path, fmt: str | None) -> Path:
    import graphviz

    fmt = fmt or path.suffix.lstrip(".") or "svg"
    dot = graphviz.Digraph(comment="dagger_wf experiment tree")
    dot.attr("node", shape="box", fontname="monospace", fontsize="10")
    for node in tree.nodes:
        dot.node(node.sha(), _label(node), color=_STATUS_COLOURS.get(node.status, "black"))
    for parent, children in tree.edge_map.items():
        for child in sorted(children):
            dot.edge(parent, child)
    path.parent.mkdir(parents=True, exist_ok=True)
    dot.render(outfile=path, format=fmt, cleanup=True)
    return path
