"""The Train page in a real browser: live curves, Stop, page switches and reloads keep runs."""

import pytest
from playwright.sync_api import Page, expect

from tests.e2e import harness

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 600
# A run long enough to watch: 20 epochs took about 7 s on an idle 2-core VM with the live
# chart polling every 0.5 s, and the chart first showed about 2 s after Train.
LIVE_RUN_EPOCHS = 20
# A run that the test stops or leaves while it trains: the Epochs slider's maximum.
LONG_RUN_EPOCHS = 50


def test_live_curve_grows_then_run_is_done(page: Page, server):
    # Plotly's script loads with the first chart of a page and can take seconds. Loading it on
    # the Dataset page, then moving to Train in the same page, lets the live chart show at once.
    harness.open_page(page, server.url, "/dataset", "The dataset")
    expect(page.locator("[data-testid=stPlotlyChart] .js-plotly-plot").first).to_be_attached()
    harness.go_to_page_via_sidebar(page, "Train", harness.TRAIN_HEADING)
    harness.open_quick_run_settings(page)
    harness.set_slider(page, "Training images", "all")
    harness.set_slider(page, "Epochs", str(LIVE_RUN_EPOCHS))
    run_name = harness.start_training(page)
    progress = page.locator("[data-testid=stProgress]")

    def sample_while_training(more_than: float) -> float | None:
        """Return the epochs the live chart shows once they exceed `more_than` while the run trains."""
        epochs_shown = harness.live_epochs_shown(page)
        if harness.run_state(page, run_name) == "done":
            raise AssertionError(f"{run_name} ended before the live chart showed more than {more_than} epochs")
        return epochs_shown if epochs_shown > more_than and progress.count() > 0 else None

    first = harness.wait_until(lambda: sample_while_training(0), RUN_TIMEOUT_S,
                               "the live chart never showed a training loss while the run trained")
    second = harness.wait_until(lambda: sample_while_training(first), RUN_TIMEOUT_S,
                                f"the live chart stayed at {first} epochs while the run trained")

    harness.wait_for_run_state(page, run_name, ("done",), RUN_TIMEOUT_S)
    expect(page.get_by_role("heading", name="Latest run")).to_be_visible()
    harness.wait_until(lambda: harness.live_epochs_shown(page) == LIVE_RUN_EPOCHS, 30,
                       f"the finished run's chart does not show all {LIVE_RUN_EPOCHS} epochs")
    assert 0 < first < second < LIVE_RUN_EPOCHS, f"live chart samples: {first}, then {second} epochs"
    expect(harness.exceptions(page)).to_have_count(0)


def test_stop_keeps_run_and_model(page: Page, server):
    harness.open_page(page, server.url, "/train", harness.TRAIN_HEADING)
    harness.set_slider(page, "Epochs", str(LONG_RUN_EPOCHS))
    run_name = harness.start_training(page)
    harness.wait_until(lambda: harness.live_epochs_shown(page) > 0, RUN_TIMEOUT_S,
                       "the live chart never showed a training loss")

    page.get_by_role("button", name="Stop", exact=True).click()

    harness.wait_for_run_state(page, run_name, ("stopped",), 60)
    expect(page.get_by_text("stopped early; the model learned so far is kept", exact=False)).to_be_visible()
    rows = harness.runs_table(page)
    stopped = next(row for row in rows if row["run"] == run_name)
    assert int(stopped["epochs"]) < LONG_RUN_EPOCHS, f"the run was not stopped early: {stopped}"

    harness.go_to_page_via_sidebar(page, "Predict", "Predict")
    expect(page.get_by_text("There is no trained model yet", exact=False)).to_have_count(0)
    harness.expect_model_offered(page, run_name)
    expect(page.locator(harness.CANVAS)).to_be_visible()


def test_page_switch_keeps_training_run(page: Page, server):
    harness.open_page(page, server.url, "/train", harness.TRAIN_HEADING)
    harness.set_slider(page, "Epochs", str(LIVE_RUN_EPOCHS))
    run_name = harness.start_training(page)
    expect(page.get_by_role("heading", name="Training now")).to_be_visible()

    harness.go_to_page_via_sidebar(page, "Dataset", "The dataset")
    harness.go_to_page_via_sidebar(page, "Train", harness.TRAIN_HEADING)

    state = harness.wait_for_run_state(page, run_name, ("queued", "running", "done"), 30)
    assert state in ("queued", "running", "done")
    harness.wait_for_run_state(page, run_name, ("done",), RUN_TIMEOUT_S)
    assert [row["run"] for row in harness.runs_table(page)] == [run_name]


def test_reload_keeps_runs(page: Page, server, trained_run):
    owner, run_name = trained_run
    harness.open_page(page, server.url, "/train", harness.TRAIN_HEADING, owner)
    harness.wait_for_run_state(page, run_name, ("done",), 30)
    url = page.url

    page.reload()
    harness.wait_for_app(page, harness.TRAIN_HEADING)

    assert page.url == url
    harness.wait_for_run_state(page, run_name, ("done",), 30)
    expect(page.get_by_role("heading", name="Latest run")).to_be_visible()
    assert harness.live_epochs_shown(page) > 0, "the reloaded page shows no curves for the run"
