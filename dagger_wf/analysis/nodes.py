"""NodeSet: a list of states that filters by tag and combines with & and |."""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import InvalidNodeSetOperandError

if TYPE_CHECKING:
    from ..state import ExperimentState


_GLOB_CHARACTERS = frozenset("*?[")


class NodeSet(list):
    """States of a tree, in tree order. Combining keeps the left operand's order."""

    def filter(self, pattern: str | Callable[[ExperimentState], bool]) -> NodeSet:
        """States with a tag matching the ``fnmatch`` glob ``pattern`` (``"lr:*"``).

        ``"!pattern"`` keeps the states with no matching tag. A callable keeps the states
        for which it returns true.
        """
        if callable(pattern):
            return NodeSet(node for node in self if pattern(node))
        negated = pattern.startswith("!")
        glob = pattern[1:] if negated else pattern
        if not _GLOB_CHARACTERS.intersection(glob):  # a plain tag: no pattern to match
            if negated:
                return NodeSet([node for node in self if glob not in node.tags])
            return NodeSet([node for node in self if glob in node.tags])
        # Asked once per distinct tag: states share few tags among them (stored tags are
        # interned, so the cache finds each by identity).
        matches = functools.cache(re.compile(fnmatch.translate(glob)).match)
        return NodeSet([node for node in self if negated != any(map(matches, node.tags))])

    def __getitem__(self, index: Any) -> Any:
        """A state by position; a slice is a NodeSet again."""
        item = super().__getitem__(index)
        return NodeSet(item) if isinstance(index, slice) else item

    def _other(self, other: object, operator: str) -> NodeSet:
        if not isinstance(other, NodeSet):
            raise InvalidNodeSetOperandError(
                f"NodeSet {operator} {type(other).__name__}: a NodeSet combines only with "
                "another NodeSet (e.g. tree.nodes.filter(...))."
            )
        return other

    def __and__(self, other: object) -> NodeSet:
        members = {id(node) for node in self._other(other, "&")}
        return NodeSet(node for node in self if id(node) in members)

    def __or__(self, other: object) -> NodeSet:
        seen = {id(node) for node in self}
        added = [node for node in self._other(other, "|") if id(node) not in seen]
        return NodeSet([*self, *added])

    def __rand__(self, other: object) -> NodeSet:
        self._other(other, "&")
        return NotImplemented

    __ror__ = __rand__

    @property
    def iterator(self) -> Iterator[ExperimentState]:
        """Each state with its payload loaded in turn, deflated again after its turn."""
        for node in self:
            with node.lazy_load():
                yield node

    def shas(self) -> list[str]:
        return [node.sha() for node in self]
