"""The dashboard's page: served with its assets as files, or as one self-contained report.

Both are the same ``index.html``, ``app.js`` and ``app.css`` (in ``static/``, shipped in
the package: nothing is fetched from the internet). The report inlines the two assets and
the data; the data goes in a ``<script type="application/json">`` with every ``<``, ``>``
and ``&`` escaped, so no value from the store (a tag, a traceback) can end that element.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

STATIC = Path(__file__).parent / "static"
ASSETS = {name: STATIC / name for name in ("app.js", "app.css")}
_SERVED_HEAD = (
    '<link rel="stylesheet" href="/static/app.css">\n<script src="/static/app.js" defer></script>'
)


def _template() -> str:
    return (STATIC / "index.html").read_text(encoding="utf-8")


def served_page() -> str:
    """The page the server sends: its assets by URL, its data from the server's API."""
    return _template().replace("<!-- assets -->", _SERVED_HEAD).replace("<!-- data -->", "")


def embedded_json(value: Any) -> str:
    """JSON that is safe inside an HTML ``<script>`` element."""
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def report_page(bundle: dict[str, Any]) -> str:
    """One HTML file that shows ``bundle`` (every view) with no server and no network."""
    style = ASSETS["app.css"].read_text(encoding="utf-8")
    # "</script" in the script (a string) would end the inline element: "<\/script" is
    # the same string to JavaScript.
    script = re.sub("</(script)", r"<\\/\1", ASSETS["app.js"].read_text("utf-8"), flags=re.I)
    head = f"<style>\n{style}\n</style>\n<script>\n{script}\n</script>"
    data = f'<script id="dagger-data" type="application/json">{embedded_json(bundle)}</script>'
    return _template().replace("<!-- assets -->", head).replace("<!-- data -->", data)
