"""StaticExperimentTree: filters, set algebra, distances, lookup, drawing, networkx."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
from trees import build_lottery_tree

import dagger_wf as dg


@pytest.fixture
def lottery(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    exp.run()
    keys = {name: promise.key for name, promise in promises.items()}
    return dg.Experiment.restore(experiment_dir, slim=True), keys


def test_restore_gives_root_and_graph(lottery):
    restored, keys = lottery
    assert restored.root.sha() == keys["root"]
    assert restored.graph.root is restored.root
    assert isinstance(restored.graph, dg.StaticExperimentTree)


def test_filters_compose_with_and(lottery):
    restored, keys = lottery
    tree = restored.graph
    selected = tree.nodes.filter("pruned") & tree.nodes.filter("lr:0.1")
    assert selected.shas() == [keys["pruned 0.1"]]


def test_negated_filter_keeps_states_without_a_matching_tag(lottery):
    restored, keys = lottery
    assert set(restored.graph.nodes.filter("!pruned").shas()) == {
        keys["root"],
        keys["trained 0.1"],
        keys["trained 0.01"],
    }


def test_glob_filter_and_union(lottery):
    restored, _keys = lottery
    tree = restored.graph
    assert len(tree.nodes.filter("lr:*")) == 4
    union = tree.nodes.filter("lr:0.1") | tree.nodes.filter("lr:0.01")
    assert len(union) == 4 and len(set(union.shas())) == 4


def test_callable_filter(lottery):
    restored, keys = lottery
    selected = restored.graph.nodes.filter(lambda node: getattr(node.recipe, "lr", None) == 0.01)
    assert selected.shas() == [keys["trained 0.01"]]


@pytest.mark.parametrize("other", [[], set(), "pruned", None])
def test_combining_a_node_set_with_anything_else_is_a_type_error(lottery, other):
    nodes = lottery[0].graph.nodes
    with pytest.raises(TypeError):
        _ = nodes & other
    with pytest.raises(TypeError):
        _ = nodes | other


def test_nodes_at_distance(lottery):
    restored, keys = lottery
    tree = restored.graph
    assert tree.nodes_at_distance(0).shas() == [keys["root"]]
    assert set(tree.nodes_at_distance(2).shas()) == {keys["pruned 0.1"], keys["pruned 0.01"]}
    assert tree.nodes_at_distance(7) == []


def test_node_lookup_by_key_or_unique_prefix(lottery):
    restored, keys = lottery
    tree = restored.graph
    assert tree.node(keys["pruned 0.1"]).sha() == keys["pruned 0.1"]
    assert tree.node(keys["pruned 0.1"][:10]).sha() == keys["pruned 0.1"]


def test_parent_and_children_links(lottery):
    restored, keys = lottery
    tree = restored.graph
    trained = tree.node(keys["trained 0.1"])
    assert trained.parent is restored.root
    assert {child.sha() for child in trained.children} == {keys["pruned 0.1"]}
    assert tree.edge_map[keys["root"]] == {keys["trained 0.1"], keys["trained 0.01"]}
    assert trained.root is restored.root


def test_networkx_graph_is_exposed(lottery):
    restored, keys = lottery
    digraph = restored.graph.digraph
    assert isinstance(digraph, nx.DiGraph)
    assert nx.shortest_path(digraph, keys["root"], keys["pruned 0.1"])[1] == keys["trained 0.1"]
    assert digraph.nodes[keys["root"]]["state"] is restored.root


def test_restore_of_one_node_loads_only_its_payload(lottery):
    restored, _keys = lottery
    selected = restored.graph.nodes.filter("pruned") & restored.graph.nodes.filter("lr:0.1")
    assert selected[0].restore() is True
    assert selected[0].weights[-1] == 0.0
    assert all(node.slim_loaded for node in restored.graph.nodes if node is not selected[0])


def test_iterator_loads_each_node_in_turn(lottery):
    restored, _ = lottery
    sums = [sum(node.weights) for node in restored.graph.nodes.filter("pruned").iterator]
    assert len(sums) == 2
    assert all(node.slim_loaded for node in restored.graph.nodes)


def test_draw_writes_an_svg_naming_every_state(lottery, tmp_path):
    restored, keys = lottery
    path = restored.graph.draw(tmp_path / "tree.svg")
    svg = path.read_text()
    assert svg.startswith("<?xml")
    assert all(key[:10] in svg for key in keys.values())
    assert "lr:0.1" in svg


def test_a_drawing_shows_each_states_own_tags_and_its_siblings_in_step_order(lottery):
    restored, _ = lottery
    tree = restored.graph
    dot = tree.to_graphviz()
    pruned = tree.nodes.filter("pruned")[0]
    box = next(line for line in dot.body if pruned.sha() in line and "label=" in line)
    assert "pruned" in box and "lr:" not in box  # its own tag, not its parent's
    root = tree.root.sha()
    edges = [[end.strip('"') for end in line.split()[::2]] for line in dot.body if "->" in line]
    drawn = [child for parent, child in edges if parent == root]
    steps = {child.sha(): repr(child.recipe.properties) for child in tree.root.children}
    assert len(set(steps.values())) > 1 and drawn == sorted(drawn, key=lambda k: (steps[k], k))
    assert "rankdir=LR" in dot.source


def test_a_drawing_takes_a_direction_and_a_label_function(lottery, tmp_path):
    restored, _ = lottery
    tree = restored.graph
    dot = tree.to_graphviz(direction="TB", label=lambda state: f"state {state.sha()[:4]}")
    assert "rankdir=TB" in dot.source
    assert f"state {tree.root.sha()[:4]}" in dot.source
    with pytest.raises(dg.UnknownLayoutError, match="LR, TB"):
        tree.draw(tmp_path / "tree.svg", direction="sideways")


def test_a_slice_of_a_node_set_is_a_node_set(lottery):
    restored, _ = lottery
    assert isinstance(restored.graph.nodes[:2], dg.NodeSet)
    assert len(restored.graph.nodes[:2].filter("!pruned")) == 2


def test_each_state_knows_its_own_root_in_a_directory_with_two_trees(experiment_dir):
    from trees import State, Train

    keys = {}
    for dataset in ["first", "second"]:
        exp = dg.Experiment(experiment_dir, State)
        keys[dataset] = Train(1, 0.1)(exp.spawn_new_tree(dataset_name=dataset, model_name="m")).key
        exp.run()
    tree = dg.Experiment.restore(experiment_dir).graph
    assert tree.node(keys["first"]).root.dataset_name == "first"
    assert tree.node(keys["second"]).root.dataset_name == "second"
    assert len(tree.nodes_at_distance(0)) == 2


def test_a_property_value_whose_class_is_gone_reads_back_as_its_repr(tmp_path):
    import subprocess
    import sys
    import textwrap

    (tmp_path / "colours.py").write_text("import enum\nclass Colour(enum.Enum):\n    RED = 1\n")
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[2])
        import colours
        import dagger_wf as dg
        from trees import State

        class Paint(dg.Recipe):
            PROPERTIES = ["colour"]
            def __init__(self, colour):
                self.colour = colour
            def run(self, state):
                return state

        exp = dg.Experiment(sys.argv[1], State)
        Paint(colours.Colour.RED)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
        exp.run()
        """
    )
    tests_dir = str(Path(__file__).parent)
    script_file = tmp_path / "paint.py"
    script_file.write_text(f"import sys\nsys.path.insert(0, {tests_dir!r})\n" + script)
    arguments = [str(script_file), str(tmp_path / "exp"), str(tmp_path)]
    subprocess.run([sys.executable, *arguments], check=True)
    (tmp_path / "colours.py").unlink()
    tree = dg.Experiment.restore(tmp_path / "exp").graph
    painted = tree.nodes_at_distance(1)[0]
    assert "Colour.RED" in repr(painted.recipe.colour)
