"""StaticExperimentTree: the stored tree, for analysis (networkx inside)."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from ..errors import CorruptStateError, StateNotComputedError, StateNotFoundError
from ..hashing import short_key
from .drawing import render_tree, tree_digraph
from .nodes import NodeSet

Nodes = NodeSet  # for the annotations below, where the class attribute NodeSet shadows it

if TYPE_CHECKING:
    import pandas

    from ..state import ExperimentState
    from ..store import ExperimentStore


class StaticExperimentTree:
    """Every stored state of an experiment and how they descend from each other.

    ``node_map`` maps key to state, ``edge_map`` key to the set of child keys, and
    ``digraph`` is the same tree as a ``networkx.DiGraph`` (node attribute ``state``) for
    any graph query of your own. ``corrupt`` lists the error of each state skipped
    because its files were damaged (``error.key`` names it): a state whose record cannot
    be read is not in the tree; one whose payload a full restore could not load is, slim.
    ``superseded`` holds the keys of the stored states outside the current tree (see
    :mod:`dagger_wf.store.definitions`); the tree holds them too only if
    ``includes_superseded``.
    """

    NodeSet = NodeSet  # the original's StaticExperimentTree.NodeSet

    def __init__(
        self,
        node_map: dict[str, ExperimentState],
        root_keys: list[str],
        corrupt: list[CorruptStateError] | None = None,
        directory: Path | None = None,
        superseded: Iterable[str] = (),
        includes_superseded: bool = False,
    ) -> None:
        self.node_map = node_map
        self.directory = directory
        self.corrupt = corrupt or []
        self.superseded = frozenset(superseded)
        self.includes_superseded = includes_superseded
        self.digraph = nx.DiGraph()
        self.digraph.add_nodes_from((key, {"state": state}) for key, state in node_map.items())
        self.digraph.add_edges_from(
            (state.parent_sha, key)
            for key, state in node_map.items()
            if state.parent_sha in node_map
        )
        # Every state has an entry, a leaf an empty set (the original's leaves idiom:
        # [key for key, children in tree.edge_map.items() if not children]).
        self.edge_map: dict[str, set[str]] = defaultdict(set, {key: set() for key in node_map})
        for parent, child in self.digraph.edges:
            self.edge_map[parent].add(child)
        self.root_keys = [key for key in root_keys if key in node_map]
        self.toposort: dict[int, set[str]] = defaultdict(set)
        for key, depth in self._depths().items():
            self.toposort[depth].add(key)

    def _depths(self) -> dict[str, int]:
        depths: dict[str, int] = {}
        for root in self.root_keys:
            for key, depth in nx.single_source_shortest_path_length(self.digraph, root).items():
                depths[key] = min(depth, depths.get(key, depth))
        return depths

    @property
    def root(self) -> ExperimentState | None:
        """The most recently spawned root."""
        return self.node_map[self.root_keys[-1]] if self.root_keys else None

    @property
    def nodes(self) -> Nodes:
        """Every state, roots first, then level by level (ties by key): a new NodeSet
        each time, in an order worked out once (the tree does not change)."""
        return NodeSet(self._ordered_states)

    @functools.cached_property
    def _ordered_states(self) -> tuple[ExperimentState, ...]:
        ordered = [key for depth in sorted(self.toposort) for key in sorted(self.toposort[depth])]
        unreachable = sorted(set(self.node_map) - set(ordered))
        return tuple(self.node_map[key] for key in [*ordered, *unreachable])

    def leaves(self) -> Nodes:
        return NodeSet(node for node in self.nodes if not self.edge_map.get(node.sha()))

    def node(self, sha: str) -> ExperimentState:
        """The state with key ``sha``, or with the unique key starting with ``sha``."""
        if sha in self.node_map:
            return self.node_map[sha]
        matches = [key for key in self.node_map if key.startswith(sha)]
        if len(matches) == 1:
            return self.node_map[matches[0]]
        reason = f"{len(matches)} keys start with it" if matches else "no state has that key"
        raise StateNotFoundError(
            f"No single state for {sha!r}: {reason}. Use a longer prefix, or list the keys "
            "with [n.sha() for n in tree.nodes]."
        )

    def nodes_at_distance(self, distance: int) -> Nodes:
        """States ``distance`` steps below a root (0: the roots)."""
        return NodeSet(self.node_map[key] for key in sorted(self.toposort.get(distance, ())))

    def to_graphviz(
        self,
        node_args: dict[str, str] | None = None,
        direction: str = "LR",
        label: Callable[[ExperimentState], str] | None = None,
    ) -> Any:
        """The tree as a ``graphviz.Digraph`` (shown inline in a notebook), nothing written.
        ``direction``: where the root is ("LR": left, "TB": top, "RL", "BT"); ``label``:
        the text of a state's box (default: key, step and properties, its own tags);
        ``node_args``: Graphviz attributes given to every node. Siblings are drawn in
        the order of their steps; superseded states (in a tree restored with
        ``include_superseded=True``) are grey and dashed, failed ones red."""
        return tree_digraph(self.nodes, self.edge_map, node_args, self.superseded, direction, label)

    def draw(
        self,
        filename: str | Path = "graph",
        format: str | None = None,
        view: bool = False,
        direction: str = "LR",
        label: Callable[[ExperimentState], str] | None = None,
    ) -> Path:
        """Render the tree with Graphviz and return the file written: as in the original
        dagger, ``draw("out/graph", format="png")`` writes ``out/graph.png``. Without a
        format, a name with a Graphviz suffix is written as it is (``draw("tree.svg")``),
        any other gets ``.pdf``. ``view=True`` opens it in the system's viewer.
        ``direction`` and ``label`` as for :meth:`to_graphviz`."""
        return render_tree(
            self.to_graphviz(direction=direction, label=label), filename, format, view
        )

    # ------------------------------------------------------------ tracking

    def history(self, nodes: Iterable[ExperimentState] | None = None) -> pandas.DataFrame:
        """One row per attempt of every state (or of ``nodes``, e.g. a filter's result):
        status, times, seed, properties, tags, ``current`` and final metric values.
        Without ``nodes``, the states this tree holds: the current tree unless it was
        restored with ``include_superseded=True``."""
        from ..tracking.history import history_frame

        keys = None if nodes is None else [node.sha() for node in nodes]
        return history_frame(self._store(), keys, include_superseded=self.includes_superseded)

    def metric_history(
        self, name: str, nodes: Iterable[ExperimentState] | None = None
    ) -> pandas.DataFrame:
        """Metric ``name`` step by step for every state (or ``nodes``): key, step, value."""
        from ..tracking.history import metric_frame

        chosen = self.nodes if nodes is None else nodes
        return metric_frame(self._store(), name, [node.sha() for node in chosen])

    def plot_metric(
        self,
        name: str,
        nodes: Iterable[ExperimentState] | None = None,
        ax: Any = None,
        label: Callable[[ExperimentState], str] | None = None,
    ) -> Any:
        """A matplotlib line per state of metric ``name`` over its steps; returns the axes.

        Each line's legend entry is ``label(state)``: by default the key's prefix and the
        state's tags; a label in words (``lambda s: f"lr {s.recipe.lr}"``) reads better.
        """
        import matplotlib.pyplot as plt

        frame = self.metric_history(name, nodes)
        ax = ax or plt.subplots(figsize=(7, 4.5))[1]
        for key, series in frame.groupby("key", sort=False):
            node = self.node_map[key]
            text = label(node) if label else f"{short_key(key)} {','.join(sorted(node.tags))}"
            ax.plot(series["step"], series["value"], marker=".", label=text.strip())
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        if len(frame):
            ax.legend(fontsize=7)
        return ax

    def _store(self) -> ExperimentStore:
        from ..store import ExperimentStore

        if self.directory is None:
            raise StateNotComputedError(
                "This tree was built without an experiment directory, so it has no stored "
                "history; load it with dg.Experiment.restore(directory).graph."
            )
        return ExperimentStore(self.directory)

    def __len__(self) -> int:
        return len(self.node_map)

    def __repr__(self) -> str:
        return f"StaticExperimentTree({len(self)} states, {len(self.corrupt)} corrupt)"
