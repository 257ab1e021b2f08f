"""Refuse a processes run from a script without an ``if __name__ == "__main__":`` guard.

Dask's processes scheduler starts fresh interpreters that import the main script again
(multiprocessing's "spawn"); unguarded, each of them would define and run the whole
experiment again, and the run dies with a page of ``BrokenProcessPool`` tracebacks that
never name the cause. Checked before any process starts, from the line of the script
that is running now.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from types import FrameType

from ..errors import UnguardedScriptError


def check_main_is_guarded() -> None:
    """Raise UnguardedScriptError if the main script's module-level code running now
    (the line that led to this call) is outside an ``if __name__ == "__main__":``."""
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    frame = _module_frame_of(script) if script else None
    if frame is None or script is None:  # a notebook, python -c, an imported module
        return
    try:
        tree = ast.parse(Path(script).read_text(), script)
    except (OSError, SyntaxError, ValueError):
        return
    if not any(_is_main_guard(node, frame.f_lineno) for node in tree.body):
        name = Path(script).name
        raise UnguardedScriptError(
            f"scheduler='processes' starts Python processes that import {name} again, and "
            f"line {frame.f_lineno} of {name} runs the experiment at import, so each of "
            "them would run it again. Put the code that defines and runs the tree under "
            '`if __name__ == "__main__":` (recipes and the state class stay at the top '
            "level), or use scheduler='threads'."
        )


def _module_frame_of(script: str) -> FrameType | None:
    """The frame running the script's top-level code, if it is on the stack."""
    frame: FrameType | None = sys._getframe(1)
    resolved = str(Path(script).resolve())
    while frame is not None:
        code = frame.f_code
        if code.co_name == "<module>" and str(Path(code.co_filename).resolve()) == resolved:
            return frame
        frame = frame.f_back
    return None


def _is_main_guard(node: ast.stmt, line: int) -> bool:
    """Whether ``node`` is an ``if __name__ == "__main__":`` whose body holds ``line``."""
    if not isinstance(node, ast.If) or not node.body:
        return False
    test = node.test
    guard = (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
        and isinstance(test.ops[0], ast.Eq)
    )
    end = node.body[-1].end_lineno or node.body[-1].lineno
    return guard and node.body[0].lineno <= line <= end
