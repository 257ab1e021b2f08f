"""Drawing a tree with Graphviz (needs the ``dot`` program: Debian package graphviz)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import UnknownLayoutError
from ..hashing import Identified, RecipeIdentity, identity_of, short_key
from ..records import Status
from ..state import ExperimentState

_STATUS_COLOURS = {Status.DONE: "black", Status.FAILED: "red", Status.PENDING: "grey"}
# What `draw()` writes when neither a format nor a known suffix says: the original's default.
DEFAULT_FORMAT = "pdf"


SUPERSEDED_COLOUR = "grey60"


SHORT_VALUE = 16  # characters of a property value in a box
DIRECTIONS = ("LR", "TB", "RL", "BT")  # Graphviz rankdir: where the root is, first


def own_tags(node: ExperimentState) -> list[str]:
    """The tags a state has and its parent has not: what its own definition added."""
    inherited = set(node.parent.tags) if node.parent is not None else set()
    return sorted(set(node.tags) - inherited)


def step_text(recipe: Identified | RecipeIdentity | None) -> str:
    """The step that makes a state, with its properties: ``Train(lr=0.1)``, or ``root``."""
    if recipe is None:
        return "root"
    identity = identity_of(recipe)
    values = ", ".join(f"{name}={_short(value)}" for name, value in identity.properties.items())
    return f"{identity.class_name}({values})"


def default_label(node: ExperimentState) -> str:
    """Key, step and its properties, then the state's own tags, one per line."""
    return "\n".join([f"{short_key(node.sha())}  {step_text(node.recipe)}", *own_tags(node)])


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= SHORT_VALUE else text[: SHORT_VALUE - 1] + "…"


def _sibling_order(node: ExperimentState) -> tuple[str, str]:
    """Siblings drawn in the order of their step (class, then properties), not of keys."""
    return default_label(node).split("\n")[0].split("  ", 1)[-1], node.sha()


def tree_digraph(
    nodes: Iterable[ExperimentState],
    edge_map: Mapping[str, set[str]],
    node_args: Mapping[str, str] | None = None,
    superseded: Collection[str] = frozenset(),
    direction: str = "LR",
    label: Callable[[ExperimentState], str] | None = None,
) -> Any:
    """A ``graphviz.Digraph`` of the states as boxes and their edges, the root first in
    ``direction`` and siblings in the order of their steps. A box says ``label(state)``
    (default: key, step and properties, the state's own tags); failed states are red and
    say FAILED, superseded ones (the keys in ``superseded``) grey and dashed.
    ``node_args`` are Graphviz node attributes that override ours."""
    import graphviz

    if direction not in DIRECTIONS:
        raise UnknownLayoutError(
            f"Unknown drawing direction {direction!r}; use one of {', '.join(DIRECTIONS)} "
            "(where the root is drawn: left, top, right, bottom)."
        )
    by_key = {node.sha(): node for node in nodes}
    dot = graphviz.Digraph(comment="dagger_wf experiment tree")
    dot.attr(rankdir=direction, nodesep="0.08", ranksep="0.3")
    dot.attr("node", shape="box", fontname="monospace", fontsize="9", margin="0.05,0.02")
    for key in _drawing_order(by_key, edge_map):
        node = by_key[key]
        lines = (label or default_label)(node).split("\n")
        if node.dagger.status is Status.FAILED:
            lines.append("FAILED")
        if key in superseded:
            lines.append("superseded")
            style = {"color": SUPERSEDED_COLOUR, "fontcolor": SUPERSEDED_COLOUR, "style": "dashed"}
        else:
            style = {"color": _STATUS_COLOURS.get(node.dagger.status, "black")}
        text = "\\n".join(line.replace('"', "'") for line in lines)
        dot.node(key, text, **{**style, **(node_args or {})})
        for child in _ordered(edge_map.get(key, ()), by_key):
            dot.edge(key, child)
    return dot


def _ordered(keys: Iterable[str], by_key: Mapping[str, ExperimentState]) -> list[str]:
    known = [key for key in keys if key in by_key]
    return sorted(known, key=lambda key: _sibling_order(by_key[key]))


def _drawing_order(
    by_key: Mapping[str, ExperimentState], edge_map: Mapping[str, set[str]]
) -> list[str]:
    """Every key, parents before children and siblings in step order (Graphviz keeps the
    order nodes are given in within a rank)."""
    children = {child for kids in edge_map.values() for child in kids}
    tops = _ordered([key for key in by_key if key not in children], by_key)
    order: list[str] = []
    frontier = list(reversed(tops))
    while frontier:
        key = frontier.pop()
        order.append(key)
        frontier += reversed(_ordered(edge_map.get(key, ()), by_key))
    return order


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
