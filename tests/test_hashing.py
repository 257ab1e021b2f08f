"""Cache keys: canonical, stable across processes, sensitive to code, blind to layout."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import importlib.util
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from trees import State, Train

import dagger_wf as dg
from dagger_wf.hashing import RecipeIdentity, child_key, encode_value, recipe_code_version, root_key

TESTS_DIR = Path(__file__).parent


class Colour(enum.Enum):
    RED = 1


@dataclasses.dataclass(frozen=True)
class Schedule:
    warmup: int
    decay: float


def module_level_function():
    return 1


# Golden values: a change here changes every user's cache key. Make it deliberately.
GOLDEN_ROOT = "ea03c4a1d6bb98478004366f9cc587157aab0cfd182f1321694fa42f90a1f541"


def test_root_key_is_pinned():
    key = root_key(State, {"dataset_name": "digits", "model_name": "mlp"})
    assert key == GOLDEN_ROOT


def test_child_key_is_pinned():
    identity = RecipeIdentity("Train", "trees", {"nb_epochs": 3, "lr": 0.1}, "VERSION:1")
    assert child_key(GOLDEN_ROOT, identity) == (
        "791ec5644e545e3204340881958fc99fdf9909c6effcffda6f1115af3c9f895c"
    )


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (True, 1),
        (1, 1.0),
        (0.0, -0.0),
        ([1, 2], (1, 2)),
        ("1", 1),
        (b"ab", "ab"),
        ({"a": 1}, {"a": 1.0}),
        (None, "None"),
    ],
)
def test_values_of_different_kinds_never_share_an_encoding(left, right):
    assert encode_value(left) != encode_value(right)


def test_dict_and_set_encodings_do_not_depend_on_insertion_order():
    assert encode_value({"b": 1, "a": 2}) == encode_value({"a": 2, "b": 1})
    assert encode_value({3, 1, 2}) == encode_value({2, 3, 1})


@pytest.mark.parametrize(
    "value",
    [Colour.RED, Schedule(10, 0.5), module_level_function, Schedule, Path("a/b"), frozenset()],
)
def test_supported_values_encode(value):
    assert encode_value(value)


def test_numpy_and_torch_values_encode_by_content():
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    assert encode_value(np.arange(3)) == encode_value(np.arange(3))
    assert encode_value(np.arange(3)) != encode_value(np.arange(4))
    assert encode_value(np.float32(1.5)) != encode_value(1.5)
    assert encode_value(torch.ones(2)) != encode_value(torch.zeros(2))


@pytest.mark.parametrize(
    "value", [lambda: 1, open, object(), type("Local", (), {})()], ids=["lambda", "x", "o", "l"]
)
def test_unhashable_property_is_named_at_definition_time(experiment_dir, value):
    if value is open:
        value = open(__file__)  # noqa: SIM115 - an open file is the point
    exp = dg.Experiment(experiment_dir, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    with pytest.raises(dg.UnhashablePropertyError, match="'lr'"):
        Train(1, value)(root)


def test_unhashable_root_property_is_a_type_error(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    with pytest.raises(TypeError, match="'model_name'"):
        exp.spawn_new_tree(dataset_name="d", model_name=lambda: 0)


def _code_version(tmp_path: Path, source: str) -> str:
    """The code version of class ``Step`` defined by ``source`` in a fresh module."""
    module = tmp_path / f"step_{hashlib.sha256(source.encode()).hexdigest()[:12]}.py"
    module.write_text("import dagger_wf as dg\n\n" + textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(module.stem, module)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module.stem] = loaded  # inspect finds a class's source through its module
    try:
        spec.loader.exec_module(loaded)
        return recipe_code_version(loaded.Step)
    finally:
        del sys.modules[module.stem]


BASE = '''
class Step(dg.Recipe):
    """Docstring."""
    def run(self, state):
        state.x = max(1, 2)  # set x
        return state
'''


def test_docstrings_comments_and_layout_do_not_change_the_code_version(tmp_path):
    reformatted = '''
class Step(dg.Recipe):
    """A different docstring that mentions another_variable."""

    def run(self,   state):
        # a new comment
        state.x = max(
            1,   2
        )
        return state
'''
    assert _code_version(tmp_path, BASE) == _code_version(tmp_path, reformatted)


def test_changing_run_changes_the_code_version(tmp_path):
    changed = BASE.replace("max(1, 2)", "max(1, 3)")
    assert _code_version(tmp_path, BASE) != _code_version(tmp_path, changed)


def test_changing_indentation_structure_changes_the_code_version(tmp_path):
    nested = """
class Step(dg.Recipe):
    def run(self, state):
        if state:
            state.x = 1
            state.y = 2
        return state
"""
    flat = nested.replace("            state.y = 2\n", "        state.y = 2\n")
    assert _code_version(tmp_path, nested) != _code_version(tmp_path, flat)


def test_version_pin_replaces_the_source_hash():
    class Pinned(dg.Recipe):
        VERSION = "2"

    assert recipe_code_version(Pinned) == "VERSION:2"


def test_unreadable_source_names_the_version_pin():
    namespace: dict = {"dg": dg}
    exec(
        "class Generated(dg.Recipe):\n    def run(self, state):\n        return state\n", namespace
    )
    with pytest.raises(dg.RecipeSourceUnavailableError, match="VERSION"):
        recipe_code_version(namespace["Generated"])


KEY_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
import dagger_wf as dg
from trees import State, Train
exp = dg.Experiment(sys.argv[2], State)
root = exp.spawn_new_tree(dataset_name={"b", "a", "c"}, model_name={"z": 1, "y": (2, 3)})
print(Train(3, frozenset({"x", "y", "w"}))(root).key)
"""


def test_keys_are_identical_across_processes_with_different_hash_seeds(tmp_path):
    keys = set()
    for seed in ["0", "1", "12345"]:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        output = subprocess.run(
            [sys.executable, "-c", KEY_SCRIPT, str(TESTS_DIR), str(tmp_path / seed)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        keys.add(output.stdout.strip())
    assert len(keys) == 1


def test_explain_key_lists_every_ingredient(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    child = Train(3, 0.1)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    lines = dg.explain_key(child)
    assert lines[0] == f"key {child.key}"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "parent key",
        "recipe class",
        "recipe properties",
        "recipe code version",
    ]


class Level(enum.IntEnum):
    LOW = 1


def test_int_enum_is_not_its_integer():
    assert encode_value(Level.LOW) != encode_value(1)


NUMPY_ORDER_SCRIPT = """
import sys
import numpy as np
from dagger_wf.hashing import encode_value
if sys.argv[1] == "array first":
    encode_value(np.zeros(2))
print(encode_value(np.float64(0.1)))
"""


def test_a_numpy_scalar_encodes_the_same_whatever_was_hashed_before():
    outputs = {
        subprocess.run(
            [sys.executable, "-c", NUMPY_ORDER_SCRIPT, order],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for order in ["scalar alone", "array first"]
    }
    assert len(outputs) == 1
    assert "numpy.scalar" in outputs.pop()


def _object_array():
    np = pytest.importorskip("numpy")
    return np.array([object(), object()])


def _self_referencing_list():
    value = []
    value.append(value)
    return value


@pytest.mark.parametrize("make_value", [_object_array, _self_referencing_list])
def test_values_without_a_canonical_form_are_named_errors(experiment_dir, make_value):
    exp = dg.Experiment(experiment_dir, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    with pytest.raises(dg.UnhashablePropertyError, match="'lr'"):
        Train(1, make_value())(root)


def test_quote_style_and_magic_trailing_commas_do_not_change_the_code_version(tmp_path):
    restyled = BASE.replace("max(1, 2)", "max(\n            1,\n            2,\n        )")
    restyled = restyled.replace('"""Docstring."""', "'''Docstring.'''")
    assert _code_version(tmp_path, BASE) == _code_version(tmp_path, restyled)


def test_a_one_element_tuple_is_not_its_element(tmp_path):
    tuple_version = BASE.replace("max(1, 2)", "(1,)")
    assert _code_version(tmp_path, tuple_version) != _code_version(
        tmp_path, BASE.replace("max(1, 2)", "(1)")
    )


def test_code_after_a_docstring_on_the_same_line_counts(tmp_path):
    one_line = BASE.replace('"""Docstring."""', '"""Docstring."""; X = 1')
    assert _code_version(tmp_path, one_line) != _code_version(
        tmp_path, one_line.replace("X = 1", "X = 2")
    )


def test_normalised_source_hash_is_pinned(tmp_path):
    # A change of the normalisation changes every user's code versions: make it on purpose.
    # The pin is the version 0.1.0 gave BASE without its docstring: dropping a docstring's
    # newline too (#11) changed only the versions of recipes that have docstrings.
    assert _code_version(tmp_path, BASE) == GOLDEN_CODE_VERSION
    undocumented = BASE.replace('    """Docstring."""\n', "")
    assert _code_version(tmp_path, undocumented) == GOLDEN_CODE_VERSION


GOLDEN_CODE_VERSION = "source:9fbb1694501c56839bc0c9b882186904fa7d51f808071dc2355c4745c71e0a1e"


RECIPE = '''
class Base(dg.Recipe):
    def run(self, state):
        return state


def tracked(method):
    return method


class Step(Base):
    """Prune a fraction of the weights."""

    PROPERTIES = ["fraction"]

    def __init__(self, fraction=0.5):
        self.fraction = fraction

    @tracked
    def run(self, state):
        """Zero the smallest weights."""
        if not state.weights:
            return state
        state.weights = [w * self._keep(w) for w in state.weights]  # keep the rest
        return state

    def _keep(self, weight):
        return abs(weight) > 0.1 + self.fraction
'''


def _edited(old: str, new: str) -> str:
    assert old in RECIPE, old
    return RECIPE.replace(old, new, 1)


LAYOUT_EDITS = {
    "class docstring added": _edited(
        "class Base(dg.Recipe):\n", 'class Base(dg.Recipe):\n    """Base."""\n\n'
    ),
    "class docstring removed": _edited('    """Prune a fraction of the weights."""\n', ""),
    "class docstring reworded": _edited("Prune a fraction", "Zero out a share"),
    "class docstring made multi-line": _edited(
        "of the weights.", "of the weights.\n\n    By magnitude, layer by layer.\n    "
    ),
    "method docstring removed": _edited('        """Zero the smallest weights."""\n', ""),
    "method docstring added": _edited(
        "        return abs(", '        """Whether to keep it."""\n        return abs('
    ),
    "one-line method docstring added": _edited(
        "def __init__(self, fraction=0.5):\n",
        'def __init__(self, fraction=0.5):\n        """Set it."""\n',
    ),
    "docstring with a comment after it": _edited('weights."""\n', 'weights."""  # why\n'),
    "docstring quoted otherwise": _edited('"""Zero the smallest weights."""', "'Zero them.'"),
    "comment added": _edited(
        "        return state\n\n", "        # done\n        return state\n\n"
    ),
    "comment removed": _edited("  # keep the rest", ""),
    "blank lines": _edited("    @tracked", "\n\n    @tracked").replace(
        "\n\n    def _keep", "\n    def _keep"
    ),
    "line continuation": _edited(
        "return abs(weight) > 0.1", "return abs(weight) \\\n            > 0.1"
    ),
    "line split inside brackets": _edited(
        "[w * self._keep(w) for", "[\n            w * self._keep(w)\n            for"
    ),
    "spacing": _edited("def __init__(self, fraction=0.5)", "def __init__( self,fraction = 0.5 )"),
    "quote style": _edited('["fraction"]', "['fraction']"),
    "magic trailing comma": _edited('["fraction"]', '[\n        "fraction",\n    ]'),
    "one-argument call split by a formatter": _edited(
        "abs(weight)", "abs(\n            weight,\n        )"
    ),
    "one-element list with a trailing comma": _edited('["fraction"]', '["fraction",]'),
    "trailing semicolon": _edited("        return state\n\n", "        return state;\n\n"),
    "parentheses a formatter adds around a long value": _edited(
        "return abs(weight) > 0.1 + self.fraction",
        "return (\n            abs(weight) > 0.1 + self.fraction\n        )",
    ),
    "parentheses around a condition": _edited("if not state.weights:", "if (not state.weights):"),
    "a body on its header's line": _edited(
        "if not state.weights:\n            return state", "if not state.weights: return state"
    ),
    "a method on one line": _edited(
        "def _keep(self, weight):\n        return", "def _keep(self, weight): return"
    ),
    "two statements on one line": _edited(
        "  # keep the rest\n        return state", "; return state"
    ),
    "indentation width": "\n".join(
        line.replace("        ", "      ", 1) if line.startswith("        ") else line
        for line in RECIPE.splitlines()
    ),
}


@pytest.mark.parametrize("edit", list(LAYOUT_EDITS))
def test_docstrings_comments_and_layout_never_change_the_code_version(tmp_path, edit):
    assert _code_version(tmp_path, LAYOUT_EDITS[edit]) == _code_version(tmp_path, RECIPE)


CODE_EDITS = {
    "a constant": _edited("0.1 + self", "0.2 + self"),
    "an operator": _edited("0.1 + self", "0.1 - self"),
    "a comparison": _edited("abs(weight) >", "abs(weight) >="),
    "precedence": _edited(
        "abs(weight) > 0.1 + self.fraction", "(abs(weight) > 0.1) + self.fraction"
    ),
    "a default argument": _edited("fraction=0.5", "fraction=0.8"),
    "a decorator removed": _edited("    @tracked\n", ""),
    "a base class": _edited("class Step(Base)", "class Step(dg.Recipe)"),
    "a helper method inside the class": _edited("return abs(weight)", "return abs(weight * 2)"),
    "a string that is not a docstring": _edited('["fraction"]', '["share"]'),
    "a statement after the docstring": _edited(
        '    """Prune a fraction of the weights."""\n',
        '    """Prune a fraction of the weights."""\n    LIMIT = 1\n',
    ),
    "the base class's run()": _edited(
        "    def run(self, state):\n        return state",
        "    def run(self, state):\n        return None",
    ),
}


@pytest.mark.parametrize("edit", list(CODE_EDITS))
def test_every_change_to_code_that_runs_changes_the_code_version(tmp_path, edit):
    assert _code_version(tmp_path, CODE_EDITS[edit]) != _code_version(tmp_path, RECIPE)


def test_a_docstring_that_is_the_whole_body_reads_as_pass(tmp_path):
    subclass = "\nclass Base(dg.Recipe):\n    pass\n\n\nclass Step(Base):\n    pass\n"
    documented = subclass.replace("Step(Base):\n    pass", 'Step(Base):\n    """Same."""')
    assert _code_version(tmp_path, documented) == _code_version(tmp_path, subclass)


def test_a_docstring_with_non_ascii_text_is_dropped_whole(tmp_path):
    accented = _edited("Prune a fraction", "Élague une fraction « à la main »")
    one_line = accented.replace('weights."""\n', 'weights."""; LIMIT = 1\n', 1)
    assert _code_version(tmp_path, accented) == _code_version(tmp_path, RECIPE)
    assert _code_version(tmp_path, one_line) == _code_version(
        tmp_path, _edited('    """Prune a fraction of the weights."""\n', "    LIMIT = 1\n")
    )


def test_the_comma_of_a_one_element_tuple_index_counts(tmp_path):
    by_tuple = _edited("for w in state.weights", "for w in state.weights[0,]")
    assert _code_version(tmp_path, by_tuple) != _code_version(
        tmp_path, by_tuple.replace("[0,]", "[0]")
    )


def test_a_statement_after_a_one_line_body_is_not_in_it(tmp_path):
    inside = _edited(
        "if not state.weights:\n            return state",
        "if not state.weights: x = 1; return state",
    )
    after = inside.replace("x = 1; return state", "x = 1\n        return state")
    assert _code_version(tmp_path, inside) != _code_version(tmp_path, after)


SHAPES = """
def keep(cls):
    return cls


class Step(dg.Recipe):
    def run(self, state):
        return state


class Outer:
    class Inner(dg.Recipe):  # a nested class
        def run(self, state):
            return state


@keep
class Decorated(dg.Recipe):
    def run(self, state):
        return state
    # a trailing comment inside the class


def factory():
    class Local(dg.Recipe):
        def run(self, state):
            return state

    return Local


class Step(dg.Recipe):  # defined again: the first definition is what inspect reads
    def run(self, state):
        return None
"""


def _import_module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = loaded
    spec.loader.exec_module(loaded)
    return loaded


def test_a_recipe_class_source_reads_as_inspect_reads_it(tmp_path):
    """Recipe sources are read with each module parsed once (not once per class): the
    text is exactly inspect's, for nested, decorated, local and redefined classes."""
    from dagger_wf.hashing import read_source

    module = _import_module(_written(tmp_path / "shapes_module.py", SHAPES))
    try:
        for cls in (module.Step, module.Outer.Inner, module.Decorated, module.factory()):
            assert read_source(cls) == inspect.getsource(cls)
    finally:
        del sys.modules[module.__name__]


def test_an_edited_module_is_read_again(tmp_path):
    from dagger_wf.hashing import read_source

    path = _written(tmp_path / "edited_module.py", BASE)
    first = _import_module(path)
    try:
        assert "max(1, 2)" in read_source(first.Step)
        edited = _written(path, BASE.replace("max(1, 2)", "min(3, 4)"))
        os.utime(edited, ns=(0, path.stat().st_mtime_ns + 10**9))  # a later version
        second = _import_module(edited)
        assert "min(3, 4)" in read_source(second.Step)
    finally:
        del sys.modules[path.stem]


def _written(path: Path, source: str) -> Path:
    path.write_text("import dagger_wf as dg\n\n" + textwrap.dedent(source))
    return path
