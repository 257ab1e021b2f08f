"""Analysis of a stored experiment: the tree, node filters, drawing."""

from .loading import load_tree
from .nodes import NodeSet
from .tree import StaticExperimentTree

__all__ = ["NodeSet", "StaticExperimentTree", "load_tree"]
