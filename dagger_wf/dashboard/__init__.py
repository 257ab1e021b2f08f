"""A read-only view of an experiment directory: served as a web page, or one HTML file."""

from __future__ import annotations

import sys
import webbrowser
from pathlib import Path

from ..store import ExperimentStore
from .page import report_page
from .server import DEFAULT_PORT, LOOPBACK, DashboardServer
from .views import report_bundle


def write_report(directory: str | Path, output: str | Path) -> Path:
    """Write the dashboard's views of ``directory`` as one self-contained HTML file."""
    store = ExperimentStore(directory)
    store.read_experiment()  # NotAnExperimentError names a wrong directory
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_page(report_bundle(store)), encoding="utf-8")
    return path


def serve(
    directory: str | Path,
    host: str | None = None,
    port: int | None = None,
    open_browser: bool = False,
    block: bool | None = None,
) -> DashboardServer:
    """Serve the dashboard of ``directory`` (on 127.0.0.1:8765 unless ``host`` and
    ``port`` say otherwise); returns the server (``.url``, ``.stop()``).

    ``block=None`` blocks in a script (until Ctrl-C) and returns at once in a notebook,
    serving from a background thread.
    """
    store = ExperimentStore(directory)
    store.read_experiment()
    server = DashboardServer(
        store, LOOPBACK if host is None else host, DEFAULT_PORT if port is None else port
    )
    print(f"dagger_wf dashboard of {store.directory} at {server.url} (read-only)")
    if open_browser:
        webbrowser.open(server.url)
    if block is None:
        block = not _in_notebook()
    if not block:
        server.start()
        return server
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return server


def _in_notebook() -> bool:
    """A Jupyter kernel runs this (blocking would freeze the notebook)."""
    return "ipykernel" in sys.modules


__all__ = ["DEFAULT_PORT", "DashboardServer", "serve", "write_report"]
