"""The read-only dashboard server: the page, its scripts, and the views as JSON.

No route writes anything: POST, PUT, PATCH and DELETE get ``405``. No URL names a file:
the page and its assets are a fixed list shipped in the package, and every other path
(``..``, absolute, percent-encoded or not) is a ``404``. Python's standard library serves
it (one thread per request), so the dashboard needs nothing installed.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import warnings
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..errors import DashboardExposedWarning, DashboardPortError
from ..store import ExperimentStore
from . import views
from .page import ASSETS, served_page

KEY = re.compile(r"[0-9a-f]{64}")
DIGEST = re.compile(r"[0-9a-f]{8,128}")
LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 8765
# The page runs only the package's own scripts, talks only to this server.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _TreeCache:
    """The tree view of the store, read again only when :func:`views.version` changes."""

    def __init__(self, store: ExperimentStore) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.tree: dict[str, Any] | None = None

    def get(self) -> dict[str, Any]:
        with self.lock:
            if self.tree is None or self.tree["version"] != views.version(self.store):
                self.tree = views.tree_view(self.store)
            return self.tree


class DashboardServer(ThreadingHTTPServer):
    """Serves one experiment directory; ``url`` is where to point a browser."""

    daemon_threads = True

    def __init__(self, store: ExperimentStore, host: str = LOOPBACK, port: int = DEFAULT_PORT):
        self.store = store
        self.trees = _TreeCache(store)
        try:
            super().__init__((host, port), _Handler)
        except OSError as error:
            raise DashboardPortError(
                f"The dashboard cannot listen on {host}:{port} ({error.strerror or error}); "
                "pass another --port (0 picks a free one)."
            ) from error
        self.trees.get()  # read the store now, so that the first page paints at once
        if not _is_loopback(host):
            warnings.warn(
                f"The dashboard listens on {host}:{self.server_address[1]}: anyone who can "
                "reach this machine on that port can read this experiment (parameters, "
                "code, environment, tracebacks). Use --host 127.0.0.1 (the default) and an "
                "SSH tunnel to keep it to yourself.",
                DashboardExposedWarning,
                stacklevel=2,
            )

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = host if isinstance(host, str) and host not in ("0.0.0.0", "::") else LOOPBACK
        return f"http://{shown}:{port}/"

    def start(self) -> threading.Thread:
        """Serve from a background thread (a notebook goes on); ``stop()`` ends it."""
        thread = threading.Thread(target=self.serve_forever, name="dagger-wf dashboard")
        thread.daemon = True
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a polling page would fill the terminal."""

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _refuse(self) -> None:
        self.close_connection = True  # its body, unread, must not be taken for a request
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only: GET and HEAD only\n", "text/plain")

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_TRACE = do_CONNECT = _refuse

    def _answer(self, head: bool) -> None:
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        found = self._route(path)
        if found is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", head)
        else:
            body, content_type = found
            self._send(HTTPStatus.OK, body, content_type, head)

    def _route(self, path: str) -> tuple[bytes, str] | None:
        store = self.server.store
        if path in ("/", "/index.html"):
            return served_page().encode(), "text/html; charset=utf-8"
        if path.startswith("/static/") and path[len("/static/") :] in ASSETS:
            name = path[len("/static/") :]
            return ASSETS[name].read_bytes(), _content_type(name)
        parts = path.split("/")
        if path == "/api/version":
            return _json({"version": views.version(store)})
        if path == "/api/tree":
            return _json(self.server.trees.get())
        if path == "/api/history":
            return _json(views.history_view(store))
        if len(parts) == 4 and parts[:3] == ["", "api", "state"] and KEY.fullmatch(parts[3]):
            state = views.state_view(store, parts[3])
            return None if state is None else _json(state)
        if (
            len(parts) == 5
            and parts[:3] == ["", "api", "snapshot"]
            and parts[3] in views.SNAPSHOT_KINDS
            and DIGEST.fullmatch(parts[4])
        ):
            snapshot = views.snapshot_view(store, parts[3], parts[4])
            return None if snapshot is None else _json(snapshot)
        return None

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "GET, HEAD")
            self.send_header("Connection", "close")
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)


def _json(value: Any) -> tuple[bytes, str]:
    return json.dumps(value, allow_nan=False).encode(), "application/json"


def _content_type(name: str) -> str:
    return {"js": "text/javascript", "css": "text/css"}[name.rsplit(".", 1)[1]] + "; charset=utf-8"
