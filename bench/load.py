"""Many users at once: browser sessions that train and predict against one Streamlit server.

Run from the repository root:

    .venv/bin/python bench/load.py [--sessions 8] [--waves 2] [--max-running 4] [--json]

One server (`streamlit run streamlit_app.py`, started by tests/e2e/harness.py)
and one Debian chromium with one browser context per session, driven
concurrently with Playwright's asyncio API. Each session is one user with its
own `?user=` id. It opens the Train page, sets "Training images" to 5000 and
"Epochs" to 2, presses Train and waits until its Runs table shows the run as
done. Then it opens the Predict page, reads the models offered, picks "Random
test image" and waits for the prediction.

The steps, in order:
1. warm-up: one session alone (loads MNIST into the server and fills caches);
2. alone: one more session alone, the reference time per run;
3. baseline: the server's RSS once both sessions are closed and dropped;
4. `--waves` times: `--sessions` sessions at once, with the RSS sampled every
   0.2 s, then the RSS once those sessions are closed and dropped.

The server runs with server.disconnectedSessionTTL = 2 s, so Streamlit drops
a closed tab's session within the run (the production value, 120 s, only
delays the same drop). Memory is VmRSS from /proc/<pid>/status of the
Streamlit process. Times per run come from two clocks: the browser's (Train
pressed until the Runs table shows the run as done, which includes queueing and the
page's 0.5 s polling) and the server log's (core.jobs "started" to "ended",
the training itself).

`--json` makes the last line of the output one JSON object.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import math
import os
import platform
import re
import statistics
import sys
import threading
import time
import tomllib
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Running `python bench/load.py` puts bench/ on sys.path, not the repository root.
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402

from tests.e2e.harness import CHROMIUM, CHROMIUM_ARGS, TRAIN_HEADING, StreamlitServer  # noqa: E402

# Closed tabs' sessions are dropped this many seconds after their WebSocket closes.
SESSION_TTL_S = 2
SUBSET = "5000"
EPOCHS = "2"
# Generous, because 8 sessions on 2 busy cores make every step slow.
STEP_TIMEOUT_MS = 120_000
# Under load, runs showed as done within 35 s of pressing Train. A stale Runs table never recovered.
RUN_TIMEOUT_S = 90
RSS_SAMPLE_INTERVAL_S = 0.2
# Time for the server to finish the scripts of closed sessions and for Python to collect them.
SETTLE_S = 5
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO core\.jobs: run (\w+) \((run \d+)\) "
                      r"of owner (\w+) (started|ended): (.*)$")
RUN_NAME = re.compile(r"\brun \d+\b")


@dataclass
class SessionResult:
    """The pages one browser session saw, and the times it measured."""
    owner: str
    run_name: str = ""
    click_to_done_s: float = float("nan")
    click_to_listed_s: float = float("nan")  # Train pressed until the run is in the Runs table
    command_line: str = ""  # the Train page's "Command line for this config" when Train was pressed
    state: str = ""  # the run's state in the Runs table when it was last read
    val_acc: str = ""
    # Whether the Runs table showed the run as finished within RUN_TIMEOUT_S. When it did not,
    # the session still goes on to the Predict page, which reads the runs from the server.
    table_finished: bool = False
    live_heading: str = ""  # "Training now" or "Latest run" when the Runs table was last read
    table_runs: list[str] = field(default_factory=list)  # run names in the Train page's Runs table
    train_page_runs: list[str] = field(default_factory=list)  # every "run N" on the Train page
    predict_page_runs: list[str] = field(default_factory=list)  # the runs the Predict page's Model box offers
    prediction: str = ""  # the Predict page's heading, e.g. "Prediction: 7 (99%)"
    verdict: str = ""  # "Correct: ..." or "Wrong: ..."
    max_live_points: int = -1  # max number of per-batch losses the live chart showed while the run was active
    error: str = ""


@dataclass
class MemorySample:
    rss_mb: float
    threads: int


def read_status(pid: int) -> MemorySample:
    """Read VmRSS (MB) and the thread count of a process from /proc/<pid>/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return MemorySample(int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"]))


class RssSampler:
    """Sample a process's RSS and thread count in a background thread, and keep the peaks."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak_rss_mb = 0.0
        self.peak_threads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            sample = read_status(self.pid)
            self.peak_rss_mb = max(self.peak_rss_mb, sample.rss_mb)
            self.peak_threads = max(self.peak_threads, sample.threads)
            self._stop.wait(RSS_SAMPLE_INTERVAL_S)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


# --- Driving one page (asyncio counterparts of tests/e2e/harness.py's helpers) --------------

async def wait_for_app(page: Page, heading: str | None = None) -> None:
    """Wait until the app is connected, no script run is in progress, and `heading` is shown."""
    app = page.locator("[data-testid=stApp]")
    await expect(app).to_have_attribute("data-test-connection-state", "CONNECTED", timeout=STEP_TIMEOUT_MS)
    await expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=STEP_TIMEOUT_MS)
    if heading is not None:
        await expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=STEP_TIMEOUT_MS)
        await expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=STEP_TIMEOUT_MS)


async def set_slider(page: Page, label: str, target: str, key: str) -> None:
    """Press `key` (ArrowLeft or ArrowRight) on a slider until its value reads `target`."""
    slider = page.get_by_role("slider", name=label)
    await slider.focus()
    for _ in range(60):
        if await slider.get_attribute("aria-valuetext") == target:
            return
        await page.keyboard.press(key)
        await page.wait_for_timeout(50)
    raise AssertionError(f"the slider {label!r} did not reach {target!r}: "
                         f"it reads {await slider.get_attribute('aria-valuetext')!r}")


async def runs_table(page: Page) -> list[dict[str, str]]:
    """Return the rows of the Train page's Runs table (Streamlit's accessible grid), column name to text."""
    return await page.evaluate("""() => {
        const table = document.querySelector('[data-testid=stDataFrame] table');
        if (!table) return [];
        const head = [...table.querySelectorAll('thead th')].map(th => th.innerText.trim());
        return [...table.querySelectorAll('tbody tr')].map(tr =>
            Object.fromEntries([...tr.querySelectorAll('td')].map((td, i) => [head[i], td.innerText.trim()])));
    }""")


async def live_batch_losses(page: Page) -> int:
    """Return how many per-batch losses the live chart shows, or -1 when there is none.

    Streamlit sends numpy arrays base64-encoded, and plotly.js (as bundled with Streamlit 1.67) keeps
    that encoded form in `data`, so this reads the decoded arrays in `_fullData`."""
    return await page.evaluate("""() => {
        const chart = document.querySelector('.st-key-live_curves .js-plotly-plot');
        if (!chart || !chart._fullData || chart._fullData.length <= 2) return -1;
        const losses = chart._fullData[2].y;
        return losses ? losses.length : -1;
    }""")


async def run_names_on_page(page: Page) -> list[str]:
    """Return every distinct "run N" written anywhere on the page, sorted."""
    text = await page.locator("[data-testid=stMain]").inner_text()
    return sorted(set(RUN_NAME.findall(text)))


async def train_quick_run(page: Page, base_url: str, result: SessionResult) -> None:
    """Train 2 epochs on 5000 images from the Train page and wait until the Runs table shows done.

    Gives up waiting after RUN_TIMEOUT_S and records what the page showed then."""
    await page.goto(f"{base_url}/train?user={result.owner}")
    await wait_for_app(page, TRAIN_HEADING)
    summary = page.get_by_text("Data split, seed, device and quick runs", exact=True)
    await summary.click()
    await expect(page.get_by_text("Training images", exact=True)).to_be_visible(timeout=STEP_TIMEOUT_MS)
    await set_slider(page, "Training images", SUBSET, "ArrowRight")
    await set_slider(page, "Epochs", EPOCHS, "ArrowLeft")
    await wait_for_app(page)
    result.command_line = (await page.get_by_text("python -m core.train", exact=False).first.inner_text()).strip()

    start = time.monotonic()
    await page.get_by_role("button", name="Train", exact=True).click()
    while time.monotonic() - start < RUN_TIMEOUT_S:
        if await page.get_by_role("heading", name="Training now", exact=True).count():
            result.max_live_points = max(result.max_live_points, await live_batch_losses(page))
        rows = await runs_table(page)
        if rows and math.isnan(result.click_to_listed_s):
            result.click_to_listed_s = time.monotonic() - start
        if rows and rows[-1].get("state") not in (None, "queued", "running"):
            result.click_to_done_s = time.monotonic() - start
            result.table_finished = True
            await wait_for_app(page)
            break
        await page.wait_for_timeout(250)

    rows = await runs_table(page)
    if not rows:
        raise TimeoutError(f"the run of {result.owner} was not in the Runs table {RUN_TIMEOUT_S} s after Train "
                           "was pressed")
    live = page.get_by_role("heading", name=re.compile(r"^(Training now|Latest run)$"))
    result.live_heading = (await live.first.inner_text()).strip() if await live.count() else ""
    result.table_runs = [row["run"] for row in rows]
    result.run_name, result.state, result.val_acc = rows[-1]["run"], rows[-1]["state"], rows[-1]["val acc"]
    result.train_page_runs = await run_names_on_page(page)


async def models_offered(page: Page) -> list[str]:
    """Return the options of the Predict page's Model box ("run 3: mnist 784-32-10 ..."), read from its list."""
    await page.get_by_role("combobox", name="Model").click()
    options = page.get_by_role("option")
    await expect(options.first).to_be_visible(timeout=STEP_TIMEOUT_MS)
    texts = await options.all_inner_texts()
    await page.keyboard.press("Escape")
    return texts


async def predict_random_image(page: Page, base_url: str, result: SessionResult) -> None:
    """Open the Predict page, list its models, choose "Random test image" and read the prediction."""
    await page.goto(f"{base_url}/predict?user={result.owner}")
    await wait_for_app(page, "Predict")
    names = [match.group() if (match := RUN_NAME.match(text)) else text for text in await models_offered(page)]
    result.predict_page_runs = sorted(set(names))
    await page.get_by_text("Random test image", exact=True).click()
    heading = page.get_by_role("heading", name=re.compile(r"^Prediction: "))
    await expect(heading).to_be_visible(timeout=STEP_TIMEOUT_MS)
    await wait_for_app(page)
    result.prediction = (await heading.inner_text()).strip()
    verdict = page.get_by_text(re.compile(r"^(Correct|Wrong): the true label is "))
    result.verdict = (await verdict.first.inner_text()).strip()


async def user_session(browser: Browser, base_url: str, screenshots: Path | None = None) -> SessionResult:
    """Run one user in a fresh browser context: train a quick run, then predict.

    An error is recorded in the result, with a screenshot in `screenshots` when given."""
    result = SessionResult(owner=uuid.uuid4().hex[:16])
    context = await browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = await context.new_page()
    try:
        await train_quick_run(page, base_url, result)
        if not result.table_finished and screenshots is not None:
            await save_screenshot(page, screenshots / f"{result.owner}-train.png")
        await predict_random_image(page, base_url, result)
    except Exception as exc:  # reported per session, so one failure does not hide the others
        result.error = f"{type(exc).__name__}: {exc}"
        if screenshots is not None:
            await save_screenshot(page, screenshots / f"{result.owner}.png")
    finally:
        await context.close()
    return result


async def save_screenshot(page: Page, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=path, full_page=True)


async def drop_closed_sessions(browser: Browser, base_url: str) -> None:
    """Wait past the session TTL, then connect one short session so Streamlit expires the closed ones.

    Streamlit keeps disconnected sessions in a TTL cache that only drops expired
    entries when another session is stored, which happens when one disconnects."""
    await asyncio.sleep(SESSION_TTL_S + 1)
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(base_url)
    await wait_for_app(page, "MNIST Studio")
    await context.close()
    await asyncio.sleep(SETTLE_S)


# --- The whole measurement -------------------------------------------------------------------

@dataclass
class JobRecord:
    """One run as core.jobs logged it."""
    owner: str
    config: dict
    training_s: float = float("nan")  # "started" to "ended"
    outcome: str = ""  # the text after "ended:", e.g. "done"


@dataclass
class Wave:
    """`sessions` users at once, and the server's memory during and after them."""
    results: list[SessionResult]
    wall_s: float
    rss_peak_mb: float
    rss_after_mb: float
    threads_peak: int
    threads_after: int


@dataclass
class LoadReport:
    sessions: int
    max_running: int
    post_script_gc: bool
    alone: SessionResult | None
    waves: list[Wave]
    rss_start_mb: float
    rss_baseline_mb: float
    threads_baseline: int
    jobs: dict[str, JobRecord]  # run name -> what the server log records about it
    machine: str


def parse_job_log(log: str) -> dict[str, JobRecord]:
    """Return run name -> JobRecord from core.jobs' "started" and "ended" log lines."""
    jobs, started = {}, {}
    for line in log.splitlines():
        match = LOG_LINE.match(line)
        if match is None:
            continue
        stamp, _, name, owner, event, rest = match.groups()
        when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
        if event == "started":
            started[name] = when
            jobs[name] = JobRecord(owner=owner, config=ast.literal_eval(rest))
        elif name in jobs:
            jobs[name].training_s = (when - started[name]).total_seconds()
            jobs[name].outcome = rest.strip()
    return jobs


async def run_wave(browser: Browser, base_url: str, pid: int, sessions: int, screenshots: Path | None) -> Wave:
    with RssSampler(pid) as sampler:
        start = time.monotonic()
        results = await asyncio.gather(*(user_session(browser, base_url, screenshots) for _ in range(sessions)))
        wall_s = time.monotonic() - start
    await drop_closed_sessions(browser, base_url)
    after = read_status(pid)
    return Wave(list(results), wall_s, max(sampler.peak_rss_mb, after.rss_mb), after.rss_mb,
                max(sampler.peak_threads, after.threads), after.threads)


async def measure(server: StreamlitServer, sessions: int, waves: int, measure_alone: bool,
                  screenshots: Path | None) -> list:
    """Return [alone result or None, baseline MemorySample, start MemorySample, waves]."""
    pid = server.process.pid
    start = read_status(pid)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        warm_up = await user_session(browser, server.url)
        if warm_up.error:
            raise RuntimeError(f"the warm-up session failed: {warm_up.error}. Server log:\n{server.log()}")
        alone = await user_session(browser, server.url) if measure_alone else None
        await drop_closed_sessions(browser, server.url)
        baseline = read_status(pid)
        results = [await run_wave(browser, server.url, pid, sessions, screenshots) for _ in range(waves)]
        await browser.close()
    return [alone, baseline, start, results]


def run_load(sessions: int = 8, waves: int = 1, max_running: int = 4, post_script_gc: bool | None = None,
             measure_alone: bool = True, screenshots: Path | None = None) -> LoadReport:
    """Start a server, run the warm-up, the reference session and the waves, and stop the server.

    `post_script_gc` overrides runner.postScriptGC from .streamlit/config.toml when not None.
    Sessions that fail leave a screenshot in `screenshots` when given."""
    env = {"MNIST_STUDIO_MAX_RUNNING": str(max_running),
           "STREAMLIT_SERVER_DISCONNECTED_SESSION_TTL": str(SESSION_TTL_S)}
    if post_script_gc is not None:
        env["STREAMLIT_RUNNER_POST_SCRIPT_GC"] = str(post_script_gc).lower()
    with StreamlitServer(env=env) as server:
        alone, baseline, start, wave_results = asyncio.run(
            measure(server, sessions, waves, measure_alone, screenshots))
        log = server.log()
    effective_gc = post_script_gc if post_script_gc is not None else config_post_script_gc()
    return LoadReport(sessions=sessions, max_running=max_running, post_script_gc=effective_gc, alone=alone,
                      waves=wave_results, rss_start_mb=start.rss_mb, rss_baseline_mb=baseline.rss_mb,
                      threads_baseline=baseline.threads, jobs=parse_job_log(log), machine=machine_line())


def config_post_script_gc() -> bool:
    """Return runner.postScriptGC as $STREAMLIT_RUNNER_POST_SCRIPT_GC or .streamlit/config.toml set it.

    Streamlit's default is true."""
    if os.environ.get("STREAMLIT_RUNNER_POST_SCRIPT_GC"):
        return os.environ["STREAMLIT_RUNNER_POST_SCRIPT_GC"].lower() == "true"
    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    return bool(settings.get("runner", {}).get("postScriptGC", True))


def seed_mismatch(result: SessionResult, job: JobRecord) -> bool:
    """Return whether the server trained another seed than the page's command line showed.

    Only a command line that already shows this run's subset and epochs counts: one
    read before the page's last rerun had finished is stale."""
    shown = dict(re.findall(r"--(seed|subset|epochs) (\S+)", result.command_line))
    current = shown.get("subset") == str(job.config["subset"]) and shown.get("epochs") == str(job.config["phases"][0][0])
    return current and shown.get("seed") != str(job.config["seed"])


def machine_line() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()}-core {platform.machine()}, {device}, torch {torch.__version__}"


def print_report(report: LoadReport) -> None:
    print(f"machine: {report.machine}")
    print(f"{report.sessions} sessions at once, MNIST_STUDIO_MAX_RUNNING={report.max_running}, "
          f"runner.postScriptGC={str(report.post_script_gc).lower()}")
    if report.alone is not None:
        job = report.jobs.get(report.alone.run_name)
        print(f"alone: Train to done {report.alone.click_to_done_s:.1f} s, "
              f"training {job.training_s if job else float('nan'):.2f} s")
    print(f"RSS: start {report.rss_start_mb:.0f} MB, baseline {report.rss_baseline_mb:.0f} MB; "
          f"threads at baseline {report.threads_baseline}")
    for number, wave in enumerate(report.waves, 1):
        ok = [r for r in wave.results if not r.error and r.table_finished]
        print(f"wave {number}: {len(ok)} of {len(wave.results)} sessions saw their run done and a prediction, "
              f"in {wave.wall_s:.1f} s; "
              f"RSS peak {wave.rss_peak_mb:.0f} MB, after {wave.rss_after_mb:.0f} MB "
              f"({wave.rss_after_mb - report.rss_baseline_mb:+.0f} MB on the baseline); "
              f"threads peak {wave.threads_peak}, after {wave.threads_after}")
        for r in wave.results:
            job = report.jobs.get(r.run_name)
            seed = job.config.get("seed") if job else "-"
            if job and seed_mismatch(r, job):
                print(f"  {r.owner}: the page showed `{r.command_line}` but the server trained seed "
                      f"{job.config['seed']}")
            if not r.error and not r.table_finished:
                print(f"  {r.owner}: the Runs table still showed {r.run_name} as {r.state!r} {RUN_TIMEOUT_S} s after "
                      f"Train was pressed, under the heading {r.live_heading!r}")
            print(f"  {r.owner} {r.run_name or '-':7} {r.state or '-':5} seed {seed} val acc {r.val_acc[:6] or '-':6} "
                  f"Train to listed {r.click_to_listed_s:4.1f} s, to done {r.click_to_done_s:5.1f} s, training {job.training_s if job else float('nan'):5.2f} s, "
                  f"table {r.table_runs}, {r.prediction or '-'} {r.verdict.split(':')[0]} {r.error}")
        if ok:
            waits = [r.click_to_done_s for r in ok]
            trained = [report.jobs[r.run_name].training_s for r in ok if r.run_name in report.jobs]
            print(f"  Train to done: median {statistics.median(waits):.1f} s, max {max(waits):.1f} s; "
                  f"training: median {statistics.median(trained):.2f} s, max {max(trained):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=8, help="browser sessions at once (default 8)")
    parser.add_argument("--waves", type=int, default=2,
                        help="how many times the sessions run, one group after another (default 2)")
    parser.add_argument("--max-running", type=int, default=4,
                        help="MNIST_STUDIO_MAX_RUNNING for the server: runs training at once (default 4, "
                             "the app's default with a GPU)")
    parser.add_argument("--post-script-gc", choices=["true", "false"],
                        help="override runner.postScriptGC from .streamlit/config.toml")
    parser.add_argument("--screenshots", type=Path, help="folder for screenshots of sessions that fail")
    parser.add_argument("--json", action="store_true", help="end the output with one JSON object")
    args = parser.parse_args()
    post_script_gc = None if args.post_script_gc is None else args.post_script_gc == "true"
    report = run_load(args.sessions, args.waves, args.max_running, post_script_gc,
                      screenshots=args.screenshots)
    print_report(report)
    if args.json:
        print(json.dumps(asdict(report)))


if __name__ == "__main__":
    main()
