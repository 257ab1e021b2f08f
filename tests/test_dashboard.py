"""The dashboard: a read-only server and a one-file report, looked at in a real browser.

The browser is Debian's Chromium driven headless by Playwright for Python (``make test``
installs it); a screenshot of each view goes to ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from trees import Explode, Fit, Prune, State

import dagger_wf as dg
from dagger_wf.dashboard import serve, write_report
from dagger_wf.errors import DashboardExposedWarning, DashboardPortError, NotAnExperimentError

ROOT = Path(__file__).parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("DAGGER_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "dashboard"
SCRIPT_TAG = "<script>alert(1)</script>"
ATTRIBUTE_TAG = '"><img src=x onerror="window.__injected=1">'
WRITES = ("POST", "PUT", "PATCH", "DELETE")
# Milliseconds since the page was asked for, once the browser has painted what it shows.
PAINTED = "new Promise(r => requestAnimationFrame(() => setTimeout(() => r(performance.now()))))"


# ------------------------------------------------------------------ experiments


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's lottery-ticket example, one seed, short training."""
    directory = tmp_path_factory.mktemp("example") / "lottery"
    arguments = ["--epochs", "1", "--finetune-epochs", "1", "--seeds", "1"]
    script = ROOT / "examples" / "lottery_ticket.py"
    subprocess.run(
        [sys.executable, str(script), "--directory", str(directory), *arguments],
        check=True,
        capture_output=True,
        cwd=directory.parent,
    )
    return directory


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fitted states with loss curves, pruned children, a failing branch, and tags that
    are HTML."""
    directory = tmp_path_factory.mktemp("mixed") / "exp"
    exp = dg.Experiment(directory, State)
    root = exp.spawn_new_tree(dataset_name="digits", model_name="mlp")
    with exp.tag(SCRIPT_TAG):
        fast = Fit(0.1)(root)
    with exp.tag(ATTRIBUTE_TAG):
        slow = Fit(0.01)(root)
    with exp.tag("pruned"):
        Prune("magnitude", 0.5)(fast)
        Prune("random", 0.5)(slow)
    with exp.tag("broken"):
        Explode("<b>not bold</b> & the traceback shows it as text")(fast)
    with pytest.raises(ValueError):
        exp.run()
    return directory


def _store_bytes(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def served(mixed_dir: Path) -> Iterator[str]:
    server = serve(mixed_dir, port=0, block=False)
    yield server.url
    server.stop()


def _request(url: str, method: str, path: str) -> tuple[int, bytes, dict[str, str]]:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path, body=b"{}" if method in WRITES else None)
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


# ------------------------------------------------------------------ the server


def _routes(directory: Path) -> list[str]:
    tree = json.loads(_request_tree(directory))
    state = next(node for node in tree["nodes"] if node["recipe"] == "Fit")["key"]
    return [
        *("/", "/index.html", "/static/app.js", "/static/app.css", "/api/version"),
        *("/api/tree", "/api/history", f"/api/state/{state}", "/api/nothing"),
    ]


def _request_tree(directory: Path) -> bytes:
    server = serve(directory, port=0, block=False)
    try:
        return _request(server.url, "GET", "/api/tree")[1]
    finally:
        server.stop()


def test_every_writing_method_on_every_route_is_refused_and_the_store_is_unchanged(
    mixed_dir, served
):
    routes = _routes(mixed_dir)
    before = _store_bytes(mixed_dir)
    for route in routes:
        for method in WRITES:
            status, _, headers = _request(served, method, route)
            assert status == 405, (method, route)
            assert headers["Allow"] == "GET, HEAD"
    assert _store_bytes(mixed_dir) == before


def test_the_page_its_assets_and_views_are_served_and_only_those(served):
    for path in ("/", "/static/app.js", "/static/app.css", "/api/tree", "/api/history"):
        status, body, headers = _request(served, "GET", path)
        assert status == 200 and body, path
        assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert _request(served, "GET", "/api/state/" + "0" * 64)[0] == 404


@pytest.mark.parametrize(
    "path",
    [
        "/../experiment.json",
        "/static/../experiment.json",
        "/static/../../../../etc/passwd",
        "/%2e%2e/experiment.json",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2fetc%2fpasswd",
        "//etc/passwd",
        "/etc/passwd",
        "/experiment.json",
        "/states/",
        "/static/",
        "/static/index.html/../app.js",
        "/api/state/../../experiment.json",
        "/api/snapshot/code/../../experiment.json",
        "/api/snapshot/..%2f..%2fexperiment.json/00000000",
        "/unknown/page",
    ],
)
def test_a_path_outside_the_fixed_routes_is_not_found(served, path):
    status, body, _ = _request(served, "GET", path)
    assert status == 404
    assert b"<html" not in body  # not the page: a single-page app's index would hide it


def test_listening_beyond_loopback_warns_who_can_read_it(mixed_dir):
    with pytest.warns(DashboardExposedWarning, match="anyone who can reach"):
        server = serve(mixed_dir, host="0.0.0.0", port=0, block=False)
    server.stop()


def test_a_taken_port_is_a_named_error_that_says_what_to_do(mixed_dir, served):
    port = int(served.rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(DashboardPortError, match="another --port"):
        serve(mixed_dir, port=port, block=False)


def test_a_directory_that_is_no_experiment_is_named(tmp_path):
    with pytest.raises(NotAnExperimentError):
        serve(tmp_path, port=0, block=False)
    with pytest.raises(NotAnExperimentError):
        write_report(tmp_path, tmp_path / "report.html")


def test_start_dashboard_in_a_notebook_returns_while_it_serves(mixed_dir):
    exp = dg.Experiment(mixed_dir, State)
    server = exp.start_dashboard(port=0, block=False)
    try:
        assert _request(server.url, "GET", "/api/version")[0] == 200
    finally:
        server.stop()


def test_the_cli_serves_the_dashboard_and_writes_the_report(mixed_dir, tmp_path):
    report = tmp_path / "out" / "report.html"
    subprocess.run(
        [sys.executable, "-m", "dagger_wf.cli", "report", str(mixed_dir), "-o", str(report)],
        check=True,
        capture_output=True,
    )
    sources = re.findall(r'(?:src|href)="([^"]*)"', report.read_text())
    assert not [source for source in sources if source.startswith(("http", "//"))]
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "dagger_wf.cli", "dashboard", str(mixed_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split(" at ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        assert _request(url, "GET", "/api/tree")[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=10)


# ------------------------------------------------------------------ in the browser


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `make test` installs Debian's")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"dagger-chromium-{os.getpid()}"
        context = playwright.chromium.launch_persistent_context(
            str(profile),  # a fresh user-data directory
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        yield context
        context.close()


@pytest.fixture
def dialogs() -> list[str]:
    """The messages of every alert, confirm or prompt a page opened."""
    return []


@pytest.fixture
def page(browser, dialogs):
    page = browser.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    page.close()


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")


def _screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _shown_keys(page, selector: str = "#tree-svg .node") -> set[str]:
    return set(page.eval_on_selector_all(selector, "nodes => nodes.map(n => n.dataset.key)"))


def test_the_tree_of_the_example_shows_every_state_and_the_filter_matches_nodes_filter(
    example_dir, page
):
    tree = dg.Experiment.restore(example_dir).graph
    server = serve(example_dir, port=0, block=False)
    try:
        _open(page, server.url)
        _screenshot(page, "tree")
        assert _shown_keys(page) == {node.sha() for node in tree.nodes}
        label = page.text_content(f'.node[data-key="{tree.root.sha()}"]')
        assert tree.root.sha()[:12] in label  # a prefix to copy into `dagger-wf show`
        pruned = tree.nodes.filter("technique:magnitude")[0]
        page.hover(f'.node[data-key="{pruned.sha()}"]')
        tip = page.text_content("#tip")
        assert f"key: {pruned.sha()}" in tip
        assert "recipe: Prune" in tip and "fraction=" in tip and "technique:magnitude" in tip
        _screenshot(page, "tree-hover")
        nodes = tree.nodes
        expected = {
            "pruned": nodes.filter("pruned"),
            "!pruned": nodes.filter("!pruned"),
            "lr:*": nodes.filter("lr:*"),
            "pruned & lr:0.1": nodes.filter("pruned") & nodes.filter("lr:0.1"),
            "rewind | !pruned": nodes.filter("rewind") | nodes.filter("!pruned"),
            "finetune & lr:0.01 | rewind": (nodes.filter("finetune") & nodes.filter("lr:0.01"))
            | nodes.filter("rewind"),
        }
        for pattern, matching in expected.items():
            assert matching, pattern
            page.fill("#filter", pattern)
            assert _shown_keys(page, "#tree-svg .node.match") == set(matching.shas()), pattern
        page.fill("#filter", "pruned & technique:magnitude")
        _screenshot(page, "tree-filtered")
        page.select_option("#colour-by", "accuracy")
        _screenshot(page, "tree-by-accuracy")
        assert "accuracy:" in page.text_content("#legend")
    finally:
        server.stop()


def test_a_subtree_collapses_and_expands(example_dir, page):
    tree = dg.Experiment.restore(example_dir).graph
    server = serve(example_dir, port=0, block=False)
    try:
        _open(page, server.url)
        page.click(f'.toggle[data-toggle="{tree.root.sha()}"]')
        assert _shown_keys(page) == {tree.root.sha()}
        page.click(f'.toggle[data-toggle="{tree.root.sha()}"]')
        assert len(_shown_keys(page)) == len(tree)
    finally:
        server.stop()


def test_clicking_a_failed_node_shows_its_traceback_as_text(mixed_dir, served, page):
    _open(page, served)
    failed = page.locator('.node[data-status="failed"]')
    assert failed.count() == 1
    failed.click()
    page.wait_for_selector("pre.traceback")
    _screenshot(page, "failed-state")
    traceback = page.text_content("pre.traceback")
    assert "ValueError: <b>not bold</b> & the traceback shows it as text" in traceback
    assert page.locator("pre.traceback b").count() == 0


def test_tags_that_are_html_render_as_text_and_run_nothing(mixed_dir, served, page, dialogs):
    _open(page, served)
    for tag in (SCRIPT_TAG, ATTRIBUTE_TAG):
        key = dg.Experiment.restore(mixed_dir).graph.nodes.filter(tag).shas()[0]
        page.hover(f'.node[data-key="{key}"]')
        assert tag in page.text_content("#tip")
    _open(page, served + "#/history")
    assert SCRIPT_TAG in page.text_content("#history")
    tagged = dg.Experiment.restore(mixed_dir).graph.nodes.filter(ATTRIBUTE_TAG)
    _open(page, served + f"#/state/{tagged.shas()[0]}")
    assert ATTRIBUTE_TAG in page.text_content("table.facts")
    _screenshot(page, "html-tags-as-text")
    assert dialogs == []
    assert page.evaluate("window.__injected") is None
    assert page.locator("img").count() == 0


def test_the_history_table_has_a_row_per_attempt_and_sorts_and_filters(mixed_dir, served, page):
    history = dg.Experiment.restore(mixed_dir).graph.history()
    _open(page, served + "#/history")
    assert page.locator("#history tbody tr").count() == len(history)
    _screenshot(page, "history")
    page.click('th[data-column="status"]')
    first = page.locator("#history tbody tr").first.get_attribute("class")
    assert first == "s-done"
    page.click('th[data-column="status"]')
    assert page.locator("#history tbody tr").first.get_attribute("class") == "s-failed"
    page.fill("#history-filter", "magnitude")
    assert page.locator("#history tbody tr").count() == 1


def test_compare_shows_both_loss_curves_and_the_parameters_that_differ(mixed_dir, served, page):
    nodes = dg.Experiment.restore(mixed_dir).graph.nodes
    fits = nodes.filter("!pruned") & nodes.filter("!broken") & nodes.filter(lambda n: n.recipe)
    keys = fits.shas()
    assert len(keys) == 2
    _open(page, served + "#/history")
    for key in keys:
        page.check(f'#history input[data-key="{key}"]')
    page.click("#compare-rows")
    page.wait_for_selector("svg.plot")
    assert page.url.endswith(f"#/compare/{keys[0]},{keys[1]}")  # a link names the comparison
    loss = page.locator('figure.chart:has(text.chart-title:text-is("loss")) path.series')
    assert loss.count() == 2
    assert page.locator("table.compare tr.differs th", has_text="recipe lr").count() == 1
    assert page.locator("pre.code .line.changed").count() == 0  # one recipe, one code
    _screenshot(page, "compare")
    pruned = nodes.filter("pruned").shas()[0]
    page.goto(served + f"#/compare/{keys[0]},{pruned}")
    page.wait_for_selector("pre.code .line.changed")
    changed = page.locator("pre.code .line.changed").all_text_contents()
    assert "class Prune(dg.Recipe):" in changed and "class Fit(dg.Recipe):" in changed


def test_the_report_opens_from_disk_with_no_server_and_shows_the_same(
    mixed_dir, tmp_path, page, dialogs
):
    report = write_report(mixed_dir, tmp_path / "report.html")
    served_tree = json.loads(_request_tree(mixed_dir))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    _open(page, report.as_uri())
    assert _shown_keys(page) == {node["key"] for node in served_tree["nodes"]}
    page.click('.node[data-status="failed"]')
    page.wait_for_selector("pre.traceback")
    assert "not bold" in page.text_content("pre.traceback")
    _screenshot(page, "report-failed-state")
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
    assert dialogs == []


def test_a_state_that_finishes_during_a_run_turns_green_without_a_reload(tmp_path, page):
    directory, gate = tmp_path / "live", tmp_path / "gate"
    script = tmp_path / "live_run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import dagger_wf as dg
            from trees import State, Train, WaitFor
            exp = dg.Experiment({str(directory)!r}, State)
            root = exp.spawn_new_tree(dataset_name="d", model_name="m")
            WaitFor({str(gate)!r})(Train(1, 0.1)(root))
            exp.run()
            """
        )
    )
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    run = subprocess.Popen([sys.executable, str(script)], env=environment)
    try:
        deadline = time.monotonic() + 60
        while not list(directory.glob("running/*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        server = serve(directory, port=0, block=False)
        try:
            _open(page, server.url)
            page.evaluate("window.__loaded_once = true")
            running = page.locator('.node[data-status="running"]').first
            running.wait_for()
            key = running.get_attribute("data-key")
            _screenshot(page, "live-running")
            gate.touch()
            page.wait_for_selector(f'.node[data-key="{key}"][data-status="done"]', timeout=30_000)
            assert page.evaluate("window.__loaded_once") is True  # the same page, no reload
            _screenshot(page, "live-done")
        finally:
            server.stop()
        assert run.wait(timeout=60) == 0
    finally:
        gate.touch()
        run.wait(timeout=60)


@pytest.mark.slow
def test_a_tree_of_ten_thousand_states_paints_and_filters_within_two_seconds(tmp_path, page):
    from trees import Train as Step

    exp = dg.Experiment(tmp_path / "big", State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    for branch in range(100):
        with exp.tag(f"branch:{branch}"):
            parent = Step(branch, 0.1)(root)
            for leaf in range(99):
                with exp.tag("even" if leaf % 2 == 0 else "odd"):
                    Step(leaf, 0.2)(parent)
    exp.run()
    assert len(dg.Experiment.restore(exp.directory).graph) == 1 + 100 * 100
    server = serve(exp.directory, port=0, block=False)
    try:
        paints, filters = [], []
        for _ in range(3):  # the best of three: a shared machine has pauses
            _open(page, server.url)
            paints.append(page.evaluate(PAINTED) / 1000)
            assert page.locator("#tree-svg .node").count() == 10_001
            filters.append(
                page.evaluate(
                    """() => {
                      const start = performance.now();
                      const box = document.getElementById("filter");
                      box.value = "branch:1* & even";
                      box.dispatchEvent(new Event("input"));
                      document.body.getBoundingClientRect();  // layout, as a paint needs
                      return (performance.now() - start) / 1000;
                    }"""
                )
            )
        assert page.locator("#tree-svg .node.match").count() == 11 * 50
        _screenshot(page, "tree-10k-filtered")
        print(f"10 001 states: first paint {min(paints):.2f} s, filter {min(filters):.3f} s")
        assert min(paints) < 2.0
        assert min(filters) < 2.0
    finally:
        server.stop()
