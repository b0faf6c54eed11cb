"""Training time of the tutorial schedule in the app, watched in a browser, against the headless command.

Run from the repository root:

    .venv/bin/python bench/browser_overhead.py [--repeats 2] [--json]

Every variant trains the same config: 784-32-10 ReLU, batch 100, 5 epochs at
learning rate 0.5 then 5 at 0.1, seed 42, on the 48,000 training images of
the real MNIST.
- headless: `python -m core.train --hidden 32 --batch-size 100 --epochs 5 --lr 0.5 --then 5 0.1`
  in a child process.
- watched: in chromium, the Train page's Tutorial recipe button, then Train, with
  the page left open, so its live charts redraw every 0.5 s until the run ends.
- unwatched: the same clicks, then the browser leaves for about:blank, so the app
  server only trains.
The variants take turns (headless, watched, unwatched, and again) so that load
from other processes hits all of them alike.

Times, in seconds:
- train: headless, the `seconds` of core.train's JSON output (train_phases, with
  the epoch-0 and per-epoch evaluations). In the app, the time between core.jobs'
  "started" and "ended" log lines of the run, which also covers prepare_run on
  data already in memory and storing the model.
- s/epoch: the median training-loop seconds of epochs 1 to 10. Headless from its
  per-epoch lines, in the app from the Runs table's s/epoch column (the same median).
- click to done (watched only): from the Train click until the Runs table shows "done".
  The script reads the Runs table only after the server's log shows the run's end,
  so its own reads do not slow the run.
- CPU: CPU seconds (user + system) from the Train click to the run's "ended" log
  line. Headless, of the child process. In the app, of the server process and,
  apart, of chromium's processes and the Playwright driver.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

# Running `python bench/browser_overhead.py` puts bench/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from playwright.sync_api import Browser, expect, sync_playwright  # noqa: E402

from tests.e2e import harness  # noqa: E402

HEADLESS_COMMAND = ["-m", "core.train", "--hidden", "32", "--batch-size", "100", "--epochs", "5",
                    "--lr", "0.5", "--then", "5", "0.1"]
TUTORIAL_BUTTON = "Tutorial: 5 epochs at 0.5, then 5 at 0.1"
RUN_TIMEOUT_S = 900
VARIANTS = ("headless", "watched", "unwatched")
EPOCH_LINE = re.compile(r"^epoch\s+\d+/\d+\s+lr\s.*\s([\d.]+)s$")
# core.jobs logs "<date> <time,ms> INFO core.jobs: run <id> (<name>) of owner <owner> started: ..." and "... ended: ...".
JOB_LINE = re.compile(r"^(\S+ \S+) INFO core\.jobs: run \w+ \((.+?)\) of owner (\w+) (started|ended)")


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a live process, from /proc/<pid>/stat (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> list[int]:
    """Process ids of every live descendant of `root`."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def browser_cpu_seconds(server: harness.StreamlitServer) -> float:
    """CPU seconds of this process's descendants except the app server: the Playwright driver and chromium.

    A process that exits in between (a closed tab's renderer) drops out of the sum, so
    call this while the browser context is still open."""
    total = 0.0
    for pid in descendants(os.getpid()):
        if pid == server.process.pid:
            continue
        try:
            total += process_cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def run_headless() -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run([sys.executable, *HEADLESS_COMMAND], cwd=harness.ROOT, capture_output=True,
                               text=True, timeout=RUN_TIMEOUT_S, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    lines = completed.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    epoch_seconds = [float(m.group(1)) for m in map(EPOCH_LINE.match, lines) if m]
    return {"variant": "headless", "train_s": result["seconds"], "s_per_epoch": statistics.median(epoch_seconds),
            "process_wall_s": round(wall, 3), "process_cpu_s": round(cpu, 2), "val_acc": result["val_acc"]}


def job_seconds(server: harness.StreamlitServer, owner: str, run_name: str) -> float | None:
    """Seconds between the run's "started" and "ended" lines in the server log, or None before it ended."""
    times = {}
    for line in server.log().splitlines():
        match = JOB_LINE.match(line)
        if match and match.group(2) == run_name and match.group(3) == owner:
            times[match.group(4)] = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
    if "started" not in times or "ended" not in times:
        return None
    return (times["ended"] - times["started"]).total_seconds()


def run_in_app(browser: Browser, server: harness.StreamlitServer, watched: bool) -> dict:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(harness.SCRIPT_RUN_TIMEOUT_S * 1000)
    try:
        page = context.new_page()
        harness.open_page(page, server.url, "/train", harness.TRAIN_HEADING)
        owner = harness.owner_of(page)
        page.get_by_role("button", name=TUTORIAL_BUTTON).click()
        expect(page.get_by_role("slider", name="Further epochs")).to_be_visible()
        harness.wait_for_app(page)

        server_cpu, browser_cpu = process_cpu_seconds(server.process.pid), browser_cpu_seconds(server)
        clicked = time.perf_counter()
        run_name = harness.start_training(page)
        result = {"variant": "watched" if watched else "unwatched"}
        if not watched:
            page.goto("about:blank")
        # Reading the server's log costs the browser nothing. Reading the Runs table every
        # 0.25 s from here would make chromium work for the script, not for the user.
        result["train_s"] = harness.wait_until(lambda: job_seconds(server, owner, run_name), RUN_TIMEOUT_S,
                                               f"{run_name} did not end: the server log has no 'ended' line",
                                               interval_s=0.05)
        result["server_cpu_s"] = round(process_cpu_seconds(server.process.pid) - server_cpu, 2)
        result["browser_cpu_s"] = round(browser_cpu_seconds(server) - browser_cpu, 2)
        if watched:
            harness.wait_for_run_state(page, run_name, ("done",), RUN_TIMEOUT_S)
            result["click_to_done_s"] = round(time.perf_counter() - clicked, 3)

        harness.open_page(page, server.url, "/train", harness.TRAIN_HEADING, owner)
        row = harness.wait_until(
            lambda: next((r for r in harness.runs_table(page) if r.get("run") == run_name), None), 60,
            f"{run_name} is not in the Runs table")
        if row["state"] != "done":
            raise RuntimeError(f"{run_name} ended as {row['state']!r}, not 'done'")
        result["s_per_epoch"] = float(row["s/epoch"])
        result["val_acc"] = float(row["val acc"])
        return result
    finally:
        context.close()


def summarize(results: list[dict]) -> dict:
    medians = {}
    for variant in VARIANTS:
        rows = [r for r in results if r["variant"] == variant]
        if rows:
            medians[variant] = {key: statistics.median(r[key] for r in rows) for key in rows[0]
                                if key not in ("variant", "repeat", "val_acc")}
    base = medians.get("headless")
    for variant in ("watched", "unwatched"):
        if base is None or variant not in medians:
            continue
        medians[variant]["train_ratio"] = round(medians[variant]["train_s"] / base["train_s"], 2)
        medians[variant]["s_per_epoch_ratio"] = round(medians[variant]["s_per_epoch"] / base["s_per_epoch"], 2)
    return medians


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each variant (default: 2)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="variants to run, in turn (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    expect.set_options(timeout=harness.SCRIPT_RUN_TIMEOUT_S * 1000)

    print(f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    results = []
    with harness.StreamlitServer() as server, sync_playwright() as playwright:
        browser = harness.launch_browser(playwright)
        try:
            for repeat in range(args.repeats):
                for variant in args.variants:
                    if variant == "headless":
                        result = run_headless()
                    else:
                        result = run_in_app(browser, server, watched=variant == "watched")
                    result["repeat"] = repeat
                    result["load_average"] = round(os.getloadavg()[0], 1)
                    results.append(result)
                    print(json.dumps(result), flush=True)
        finally:
            browser.close()

    medians = summarize(results)
    for variant, values in medians.items():
        print(f"{variant:>9}: " + ", ".join(f"{key} {value:g}" for key, value in values.items()))
    if args.json:
        print(json.dumps({"runs": results, "medians": medians}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
