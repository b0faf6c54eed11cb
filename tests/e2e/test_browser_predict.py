"""The Predict page in a real browser: digits drawn with the mouse are preprocessed and read."""

import pytest
from playwright.sync_api import Page, expect

from tests.e2e import harness

pytestmark = pytest.mark.slow

PREPROCESSING_STEPS = 5


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

        page.get_by_role("button", name="Clear", exact=True).click()
        expect(prediction).to_have_count(0)

    expect(page.get_by_text(harness.EMPTY_CANVAS_PROMPT)).to_be_visible()
    correct = [digit for digit, answer in predicted.items() if answer == digit]
    # NOTE: the shared run is a 3-epoch model without drawing augmentation; the Drawing
    # recipe reads drawings better but trains for minutes on a 2-core CPU.
    assert len(correct) >= 2, f"drawn digit -> prediction: {predicted}"
    expect(harness.exceptions(page)).to_have_count(0)
