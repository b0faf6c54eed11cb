"""The Predict page in a real browser: digits drawn with the mouse are preprocessed and read."""

import pytest
from playwright.sync_api import Page, expect

from tests.e2e import harness

pytestmark = pytest.mark.slow

PREPROCESSING_STEPS = 5
# Each try in test_stroke_after_clear_registers draws a vertical line at the next of these x
# positions (fractions of the canvas's side), so one pixel distinguishes the new line from the cleared one.
LINE_XS = (0.25, 0.5, 0.75)
LINE_PIXEL_Y = 0.6
CLEAR_THEN_DRAW_TRIES = 6
# The canvas draws pure white (255) on pure black (0). Antialiasing changes only the line's edges.
WHITE_MIN = 200
BLACK_MAX = 50


def vertical_line(x: float) -> list[list[tuple[float, float]]]:
    return [[(x, 0.3), (x, 0.85)]]


def test_drawn_digits_are_predicted(page: Page, server, trained_run):
    owner, run_name = trained_run
    harness.open_page(page, server.url, "/predict", "Predict", owner)
    harness.expect_model_offered(page, run_name)
    prediction = page.get_by_role("heading", name="Prediction:")
    predicted = {}

    for digit, strokes in harness.DIGIT_STROKES.items():
        expect(page.get_by_text(harness.EMPTY_CANVAS_PROMPT)).to_be_visible()
        harness.draw(page, strokes)

        expect(prediction).to_be_visible()
        expect(page.get_by_text("5. 28x28, centre of mass centred")).to_be_visible()
        expect(page.locator("[data-testid=stImage]")).to_have_count(PREPROCESSING_STEPS)
        expect(page.locator(".st-key-probabilities .js-plotly-plot")).to_be_attached()
        predicted[digit] = prediction.inner_text().removeprefix("Prediction:").split()[0]

        page.get_by_role("button", name=harness.CLEAR_CANVAS_BUTTON, exact=True).click()
        expect(prediction).to_have_count(0)

    expect(page.get_by_text(harness.EMPTY_CANVAS_PROMPT)).to_be_visible()
    correct = [digit for digit, answer in predicted.items() if answer == digit]
    # NOTE: the shared run is a 3-epoch model without drawing augmentation; the Drawing
    # recipe reads drawings better but trains for minutes on a 2-core CPU.
    assert len(correct) >= 2, f"drawn digit -> prediction: {predicted}"
    expect(harness.exceptions(page)).to_have_count(0)


def test_stroke_after_clear_registers(page: Page, server, trained_run):
    """A stroke drawn as soon as the canvas is cleared stays on it and is predicted."""
    owner, run_name = trained_run
    harness.open_page(page, server.url, "/predict", "Predict", owner)
    harness.expect_model_offered(page, run_name)
    prediction = page.get_by_role("heading", name="Prediction:")
    clear = page.get_by_role("button", name=harness.CLEAR_CANVAS_BUTTON, exact=True)
    undo = page.get_by_role("button", name="Undo", exact=True)
    previous_x = LINE_XS[-1]
    harness.draw(page, vertical_line(previous_x))
    expect(prediction).to_be_visible()

    for attempt in range(1, CLEAR_THEN_DRAW_TRIES + 1):
        x = LINE_XS[attempt % len(LINE_XS)]
        harness.wait_for_idle(page)
        clear.click()
        harness.draw_once(page, vertical_line(x))  # no wait and no second try
        harness.wait_for_idle(page)

        expect(undo, f"try {attempt}: the canvas has no stroke to undo").to_be_enabled(timeout=3000)
        new_line = harness.canvas_red(page, x, LINE_PIXEL_Y)
        assert new_line >= WHITE_MIN, f"try {attempt}: the line drawn right after clearing is missing (red {new_line})"
        old_line = harness.canvas_red(page, previous_x, LINE_PIXEL_Y)
        assert old_line <= BLACK_MAX, f"try {attempt}: clearing left the line drawn before it (red {old_line})"
        expect(prediction, f"try {attempt}: no prediction for the line").to_be_visible()
        previous_x = x

    expect(harness.exceptions(page)).to_have_count(0)
