"""Drawing a tree with Graphviz (needs the ``dot`` program: Debian package graphviz)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..hashing import identity_of, short_key
from ..records import Status
from ..state import ExperimentState

_STATUS_COLOURS = {Status.DONE: "black", Status.FAILED: "red", Status.PENDING: "grey"}
# What `draw()` writes when neither a format nor a known suffix says: the original's default.
DEFAULT_FORMAT = "pdf"


SUPERSEDED_COLOUR = "grey60"


def _label(node: ExperimentState, superseded: bool) -> str:
    recipe = node.recipe
    step = "root" if recipe is None else identity_of(recipe).class_name
    lines = [f"{short_key(node.sha())}  {step}", *sorted(node.tags)]
    if node.dagger.status is Status.FAILED:
        lines.append("FAILED")
    if superseded:
        lines.append("superseded")
    return "\\n".join(line.replace('"', "'") for line in lines)


def tree_digraph(
    nodes: Iterable[ExperimentState],
    edge_map: Mapping[str, set[str]],
    node_args: Mapping[str, str] | None = None,
    superseded: Collection[str] = frozenset(),
) -> Any:
    """A ``graphviz.Digraph`` of the states as boxes (key, step, tags; failed ones red;
    superseded ones, the keys in ``superseded``, grey and dashed) and their edges;
    ``node_args`` are Graphviz node attributes that override ours."""
    import graphviz

    dot = graphviz.Digraph(comment="dagger_wf experiment tree")
    dot.attr("node", shape="box", fontname="monospace", fontsize="10")
    for node in nodes:
        key = node.sha()
        if key in superseded:
            style = {"color": SUPERSEDED_COLOUR, "fontcolor": SUPERSEDED_COLOUR, "style": "dashed"}
        else:
            style = {"color": _STATUS_COLOURS.get(node.dagger.status, "black")}
        dot.node(key, _label(node, key in superseded), **{**style, **(node_args or {})})
    for parent, children in edge_map.items():
        for child in sorted(children):
            dot.edge(parent, child)
    return dot


def drawing_path(filename: str | Path, fmt: str | None) -> tuple[Path, str]:
    """Where ``draw(filename, format)`` writes, and in which format: ``filename.format``
    when a format is given (as the original dagger did), else ``filename`` itself when
    its suffix is a Graphviz format (``tree.svg``), else ``filename.pdf``."""
    import graphviz

    path = Path(filename)
    if fmt is not None:
        return path.with_name(f"{path.name}.{fmt}"), fmt
    suffix = path.suffix.lstrip(".").lower()
    if suffix in graphviz.FORMATS:
        return path, suffix
    return path.with_name(f"{path.name}.{DEFAULT_FORMAT}"), DEFAULT_FORMAT


def render_tree(dot: Any, filename: str | Path, fmt: str | None, view: bool = False) -> Path:
    """Render ``dot`` (see :func:`tree_digraph`) to the file :func:`drawing_path` names."""
    path, fmt = drawing_path(filename, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    dot.render(outfile=path, format=fmt, cleanup=True, view=view)
    return path
