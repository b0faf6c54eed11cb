"""Write screenshots of every page to docs/screenshots/ from a real browser.

Run from the repository root: `.venv/bin/python -m tests.e2e.screenshots`
(or `.venv/bin/python tests/e2e/screenshots.py`). It starts the app on a free
port of 127.0.0.1, trains the tutorial recipe (10 epochs, under a minute on an
idle 2-core CPU), draws a 7 on the Predict page, and saves home.png,
dataset.png, train.png, predict.png and three views of the Inspect page.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `tests.e2e` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.e2e import harness  # noqa: E402

OUTPUT_DIR = harness.ROOT / "docs" / "screenshots"
TRAIN_TIMEOUT_S = 600
DATASET_CHARTS = 5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUTPUT_DIR, help=f"output folder (default: {OUTPUT_DIR})")
    args = parser.parse_args(argv)
    expect.set_options(timeout=harness.SCRIPT_RUN_TIMEOUT_S * 1000)

    with harness.StreamlitServer() as server, sync_playwright() as playwright:
        browser = harness.launch_browser(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(harness.SCRIPT_RUN_TIMEOUT_S * 1000)

            harness.open_page(page, server.url, "/", "MNIST Studio")
            save(page, args.out / "home.png")
            owner = harness.owner_of(page)

            harness.open_page(page, server.url, "/dataset", "The dataset", owner)
            expect(page.locator("[data-testid=stPlotlyChart] .js-plotly-plot")).to_have_count(DATASET_CHARTS)
            save(page, args.out / "dataset.png")

            harness.open_page(page, server.url, "/train", harness.TRAIN_HEADING, owner)
            page.get_by_role("button", name="Tutorial: 5 epochs at 0.5, then 5 at 0.1").click()
            harness.wait_for_app(page)
            run_name = harness.start_training(page)
            harness.wait_for_run_state(page, run_name, ("done",), TRAIN_TIMEOUT_S)
            expect(page.get_by_role("heading", name="Latest run")).to_be_visible()
            save(page, args.out / "train.png")

            harness.open_page(page, server.url, "/predict", "Predict", owner)
            harness.draw(page, harness.DIGIT_STROKES["7"])
            prediction = page.get_by_role("heading", name="Prediction:")
            expect(prediction).to_be_visible()
            expect(page.locator(".st-key-probabilities .js-plotly-plot")).to_be_attached()
            print(f"predict: drew a 7, the page shows {prediction.inner_text()!r}")
            save(page, args.out / "predict.png")

            harness.open_page(page, server.url, "/inspect", "Inspect a network", owner)
            expect(page.get_by_text("Confusion matrix")).to_be_visible()
            save(page, args.out / "inspect-evaluation.png")
            for tab, name in (("The network", "inspect-network.png"), ("One digit", "inspect-digit.png")):
                page.get_by_role("tab", name=tab).click()
                harness.wait_for_app(page)
                save(page, args.out / name)
        finally:
            browser.close()
    return 0


def save(page, path: Path) -> None:
    harness.screenshot_whole_page(page, path)
    page.set_viewport_size({"width": 1400, "height": 1000})
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    sys.exit(main())
