"""Start the app and a browser for the browser tests, the screenshot script and the benchmarks.

The server is the real app (`streamlit run streamlit_app.py`) on a free port of
127.0.0.1. The browser is Debian's chromium (or $MNIST_STUDIO_CHROMIUM) driven by
Playwright for Python, so no Playwright browser download is needed.
"""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, Playwright, expect

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
CHROMIUM = os.environ.get("MNIST_STUDIO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
SERVER_START_TIMEOUT_S = 90
# One script run of a page, including the first load of MNIST into the server (a few seconds).
SCRIPT_RUN_TIMEOUT_S = 60
OWNER_PATTERN = re.compile(r"[?&]user=([0-9a-f]{16})")
# Health checks go straight to 127.0.0.1, never through a proxy from http_proxy and the like.
DIRECT_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def stop_process(process: subprocess.Popen | None, timeout_s: float = 10) -> None:
    """Terminate a child process, and kill it if it has not exited within `timeout_s`."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class StreamlitServer:
    """The app served by `streamlit run` in a child process, with its output in a log file.

    Use as a context manager, or call start() and stop(). stop() terminates the
    process, kills it if it has not exited within 10 s, and deletes the log file."""

    def __init__(self, port: int | None = None, env: dict[str, str] | None = None,
                 command: list[str] | None = None, cwd: Path = ROOT):
        """`command` replaces the default `streamlit run` command line; it must serve on `port`."""
        self.port = port or free_port()
        self.command = command
        self.cwd = cwd
        self.url = f"http://{HOST}:{self.port}"
        self.env = {**os.environ, **(env or {})}
        log_fd, log_name = tempfile.mkstemp(prefix="mnist-studio-e2e-", suffix=".log")
        os.close(log_fd)
        self.log_path = Path(log_name)
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = SERVER_START_TIMEOUT_S) -> "StreamlitServer":
        command = self.command or [
            sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
            "--server.port", str(self.port), "--server.address", HOST, "--server.headless", "true",
            # Other edits to the checkout must not trigger reruns or "source changed" prompts mid-test.
            "--server.fileWatcherType", "none",
            "--browser.gatherUsageStats", "false"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        health = f"{self.url}/_stcore/health"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Streamlit server exited with code {self.process.returncode} "
                                   f"before it was healthy. Its log:\n{self.log()}")
            try:
                with DIRECT_OPENER.open(health, timeout=2) as response:
                    if response.read().decode().strip() == "ok":
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{health} did not return 'ok' within {timeout_s:.0f} s. "
                           f"The server's log:\n{self.log()}")

    def log(self) -> str:
        """Return the server's output so far, or a note once stop() has deleted the log file."""
        if not self.log_path.exists():
            return "(no log: the server was stopped and its log file deleted)"
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process)
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> "StreamlitServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def launch_browser(playwright: Playwright) -> Browser:
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"chromium was not found at {CHROMIUM}: install Debian's chromium package "
                                "or set MNIST_STUDIO_CHROMIUM to a Chromium binary")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# --- Waiting for the app ------------------------------------------------------

def wait_for_app(page: Page, heading: str | None = None, timeout_s: float = SCRIPT_RUN_TIMEOUT_S) -> None:
    """Block until the app is connected, no script run is in progress, and `heading` is shown.

    Streamlit 1.67 marks the root element with data-test-script-state
    ("running", "notRunning", "rerunRequested", ...) and data-test-connection-state.
    A page that polls with st.fragment(run_every=...) flips back to "running" every
    poll, so this only promises that one run had finished at some moment."""
    timeout_ms = timeout_s * 1000
    app = page.locator("[data-testid=stApp]")
    expect(app).to_have_attribute("data-test-connection-state", "CONNECTED", timeout=timeout_ms)
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=timeout_ms)
    if heading is not None:
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=timeout_ms)
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=timeout_ms)


def open_page(page: Page, base_url: str, path: str, heading: str, owner: str | None = None) -> None:
    """Load `path` (for example "/train"), as `owner` when given, and wait for its heading."""
    url = f"{base_url}{path}" + (f"?user={owner}" if owner else "")
    page.goto(url)
    wait_for_app(page, heading)


def owner_of(page: Page) -> str:
    """Return the user id the app put in the page's URL (?user=...)."""
    match = OWNER_PATTERN.search(page.url)
    if match is None:
        raise AssertionError(f"the URL {page.url} has no ?user=<16 hex digits> parameter")
    return match.group(1)


def go_to_page_via_sidebar(page: Page, title: str, heading: str) -> None:
    """Click a page's link in the sidebar navigation and wait for its heading."""
    page.locator("[data-testid=stSidebarNav]").get_by_role("link", name=title, exact=True).click()
    wait_for_app(page, heading)


def expect_model_offered(page: Page, run_name: str) -> None:
    """Check that the Predict page's Model box selects `run_name` ("run 3: mnist 784-32-10 ...")."""
    model = page.get_by_role("combobox", name="Model")
    expect(model).to_have_value(re.compile(rf"^{re.escape(run_name)}: "))


def exceptions(page: Page) -> Locator:
    return page.locator("[data-testid=stException]")


# --- The Train page -------------------------------------------------------------

TRAIN_HEADING = "Train a network"
# In charts.training_curves the third trace of each run is its training loss per batch.
BATCH_LOSS_TRACE = 2
# The Train page's live chart is st.plotly_chart(..., key="live_curves"), which Streamlit
# marks with the class st-key-live_curves.
LIVE_CHART = ".st-key-live_curves"


def wait_until(condition, timeout_s: float, message: str, interval_s: float = 0.25):
    """Call `condition` until it returns a true value and return that value; raise TimeoutError
    with `message` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} (waited {timeout_s:.0f} s)")
        time.sleep(interval_s)


def live_epochs_shown(page: Page) -> float:
    """Return how many epochs of training loss the live chart shows, or -1 without a chart.

    The per-batch trace may be thinned to fewer points (core.charts.thin_batch_losses), but its
    last x is always the number of batches so far divided by the batches per epoch. Plotly
    receives the arrays base64-encoded, so this reads the decoded ones from its internal
    _fullData (plotly.js as bundled with Streamlit 1.67). While Streamlit replaces a chart the
    old plot element can linger beside the new one, so this takes the largest value."""
    return page.evaluate(
        """([selector, trace]) => {
            let shown = -1;
            for (const plot of document.querySelectorAll(selector + ' .js-plotly-plot')) {
                const x = plot._fullData && plot._fullData.length > trace ? plot._fullData[trace].x : null;
                if (x && x.length) shown = Math.max(shown, x[x.length - 1]);
            }
            return shown;
        }""", [LIVE_CHART, BATCH_LOSS_TRACE])


def runs_table(page: Page) -> list[dict[str, str]]:
    """Return the rows of the Train page's Runs table as {column: cell text}, or [] without a table.

    st.dataframe draws on a canvas, so the rows are read from the accessible table
    that its grid (glide-data-grid) keeps beside the canvas."""
    return page.evaluate(
        """() => {
            const grid = document.querySelector('[data-testid=stDataFrame] table[role=grid]');
            if (!grid) return [];
            const columns = [...grid.querySelectorAll('th[role=columnheader]')].map(th => th.textContent);
            return [...grid.querySelectorAll('tbody tr')].map(tr => {
                const row = {};
                tr.querySelectorAll('td[role=gridcell]').forEach((td, i) => { row[columns[i]] = td.textContent; });
                return row;
            });
        }""")


def run_state(page: Page, run_name: str) -> str | None:
    """Return the state column of `run_name` in the Runs table, or None when it is not listed."""
    return next((row.get("state") for row in runs_table(page) if row.get("run") == run_name), None)


def wait_for_run_state(page: Page, run_name: str, states: tuple[str, ...], timeout_s: float) -> str:
    """Block until the Runs table lists `run_name` in one of `states`, and return that state."""
    return wait_until(lambda: run_state(page, run_name) in states and run_state(page, run_name),
                      timeout_s, f"{run_name} did not reach a state in {states}: the Runs table "
                                 f"has {runs_table(page)}")


def start_training(page: Page) -> str:
    """Press Train and return the new run's name, the last row of the Runs table.

    The table, not the progress bar, names the run because a run that waits for a
    training slot shows a "queued" message in place of a progress bar."""
    before = len(runs_table(page))
    page.get_by_role("button", name="Train", exact=True).click()

    def rows_after_click() -> list[dict[str, str]] | None:
        rows = runs_table(page)
        return rows if len(rows) > before else None

    rows = wait_until(rows_after_click, SCRIPT_RUN_TIMEOUT_S, "the Runs table did not list a new run after Train")
    return rows[-1]["run"]


def open_quick_run_settings(page: Page) -> None:
    """Expand the Train page's "Data split, seed, device and quick runs" expander."""
    summary = page.get_by_text("Data split, seed, device and quick runs", exact=True)
    if not page.get_by_role("slider", name="Training images").is_visible():
        summary.click()
    expect(page.get_by_role("slider", name="Training images")).to_be_visible()


def set_slider(page: Page, label: str, target: str, max_steps: int = 60) -> None:
    """Set a st.slider or st.select_slider to the option that reads `target`.

    Home moves the slider to its first option, then ArrowRight steps through the options."""
    slider = page.get_by_role("slider", name=label)
    slider.focus()
    page.keyboard.press("Home")
    for _ in range(max_steps):
        if slider.get_attribute("aria-valuetext") == target:
            break
        page.keyboard.press("ArrowRight")
    else:
        raise AssertionError(f"the slider {label!r} has no option {target!r} within {max_steps} steps: "
                             f"it reads {slider.get_attribute('aria-valuetext')!r}")
    wait_for_app(page)


# --- The Predict page ------------------------------------------------------------

CANVAS = "[data-testid=stBidiComponentIsolated] canvas.upper-canvas"
EMPTY_CANVAS_PROMPT = "Draw a digit on the black canvas to see a prediction."
# Mouse strokes for three digits, as (x, y) points in fractions of the canvas's side.
DIGIT_STROKES = {
    "1": [[(0.5, 0.15), (0.5, 0.85)]],
    "0": [[(0.5 + 0.22 * math.sin(2 * math.pi * i / 24), 0.5 - 0.33 * math.cos(2 * math.pi * i / 24))
           for i in range(25)]],
    "7": [[(0.25, 0.2), (0.75, 0.2), (0.4, 0.85)]],
}


# streamlit-drawable-canvas 0.13's toolbar button that empties the canvas (a bin icon).
CLEAR_CANVAS_BUTTON = "Reset canvas & history"


def draw_once(page: Page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw mouse strokes on the Predict page's canvas once, without checking that the canvas took them."""
    canvas = page.locator(CANVAS)
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    if box is None:
        raise AssertionError("the canvas was removed from the page between finding it and drawing on it")
    for stroke in strokes:
        (x, y), *rest = stroke
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=10)
        page.mouse.up()


def draw(page: Page, strokes: list[list[tuple[float, float]]], attempts: int = 3) -> None:
    """Draw mouse strokes on the Predict page's canvas, then wait for the app's rerun.

    The canvas's Undo button turns enabled once a stroke is drawn. When it stays disabled,
    the strokes are drawn again, up to `attempts` times in all."""
    undo = page.get_by_role("button", name="Undo", exact=True)
    for _ in range(attempts):
        draw_once(page, strokes)
        # NOTE: a canvas that has just mounted can miss strokes. streamlit-drawable-canvas 0.13 loads
        # its stylesheet through a <link> in the component's shadow root. Until the sheet applies, the
        # canvas is laid out about 290 px lower, so strokes aimed at that bounding box miss it. Drawn as
        # soon as the page showed a freshly mounted canvas, 7 of 80 strokes missed on a 2-core VM at
        # load average 15, and 0 of 40 on the idle VM. The toolbar's bin button clears the canvas in
        # place, so a canvas mounts only when the page opens or the input mode changes to "Draw a digit".
        try:
            expect(undo).to_be_enabled(timeout=3000)
            break
        except AssertionError:
            continue
    else:
        raise AssertionError(f"the canvas took none of {attempts} tries at drawing: its Undo button stayed disabled")
    wait_for_app(page)


def wait_for_idle(page: Page, quiet_s: float = 1.0, timeout_s: float = SCRIPT_RUN_TIMEOUT_S) -> None:
    """Block until no script run has been in progress for `quiet_s` seconds.

    wait_for_app can return in the gap between two reruns, for example before the rerun that a
    stroke starts: streamlit-drawable-canvas 0.13 sends a drawing 200 ms after the mouse button
    is released."""
    app = page.locator("[data-testid=stApp]")
    deadline = time.monotonic() + timeout_s
    idle_since = None
    while time.monotonic() < deadline:
        if app.get_attribute("data-test-script-state") == "notRunning":
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= quiet_s:
                return
        else:
            idle_since = None
        time.sleep(0.05)
    raise TimeoutError(f"the app was not idle for {quiet_s:g} s in a row within {timeout_s:.0f} s")


def canvas_red(page: Page, x: float, y: float) -> int:
    """Return the red channel, 0 to 255, of the Predict page's canvas at (x, y) in fractions of its side.

    The page draws white on black, so this is the pixel's brightness. It reads the canvas that
    contains the finished strokes: streamlit-drawable-canvas 0.13 gives its drawing canvas the class
    dc-canvas, and Fabric.js adds lower-canvas to it and copies dc-canvas to its upper-canvas."""
    drawing = page.locator("[data-testid=stBidiComponentIsolated] canvas.dc-canvas.lower-canvas")
    return drawing.evaluate("""(canvas, [x, y]) => canvas.getContext("2d").getImageData(
        Math.round(x * (canvas.width - 1)), Math.round(y * (canvas.height - 1)), 1, 1).data[0]""", [x, y])


# --- Screenshots -----------------------------------------------------------------

def screenshot_whole_page(page: Page, path: Path, width: int = 1400, max_height: int = 6000) -> None:
    """Save a screenshot of the whole app, not just the window.

    Streamlit scrolls inside its own container (stMain), so Playwright's full_page
    option captures only the window: the viewport is made as tall as that container."""
    height = page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": width, "height": min(int(height), max_height)})
    wait_for_app(page)
    page.wait_for_timeout(500)  # let Plotly redraw its charts at the new size
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
