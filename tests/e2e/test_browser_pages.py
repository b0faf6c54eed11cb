"""Every page renders in a real browser, and the Dataset page shows MNIST's images and charts."""

import pytest
from playwright.sync_api import Page, expect

from tests.e2e import harness

pytestmark = pytest.mark.slow

PAGES = [("/", "MNIST Studio"), ("/dataset", "The dataset"), ("/train", harness.TRAIN_HEADING),
         ("/predict", "Predict")]


@pytest.mark.parametrize(("path", "heading"), PAGES)
def test_page_renders(page: Page, server, path: str, heading: str):
    harness.open_page(page, server.url, path, heading)

    expect(harness.exceptions(page)).to_have_count(0)
    assert harness.owner_of(page), "the app did not put ?user=... in the URL"


def test_sidebar_pages_render(page: Page, server):
    """Every page in the sidebar, reached by clicking its link, has a title and no exception."""
    harness.open_page(page, server.url, "/", "MNIST Studio")
    # Each link's text is its Material icon's name (a font ligature), then its title.
    titles = [text.split()[-1] for text in page.locator("[data-testid=stSidebarNav] a").all_inner_texts()]
    assert {"Home", "Dataset", "Train", "Predict"} <= set(titles)

    for title in titles:
        page.locator("[data-testid=stSidebarNav]").get_by_role("link", name=title, exact=True).click()
        harness.wait_for_app(page)
        expect(page.locator("h1").first).to_be_visible()
        expect(harness.exceptions(page), f"the {title} page shows an exception").to_have_count(0)


def test_dataset_shows_images_and_charts(page: Page, server):
    harness.open_page(page, server.url, "/dataset", "The dataset")
    expect(page.get_by_text("60,000 training and 10,000 test images", exact=False)).to_be_visible()
    expect(page.locator("[data-testid=stPlotlyChart] .js-plotly-plot").nth(3)).to_be_attached()

    charts = page.evaluate(
        """() => [...document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot')]
                .map(plot => (plot.data || []).map(trace => trace.type || 'scatter'))""")
    assert len(charts) >= 4, f"expected at least 4 charts, found {charts}"
    assert all(charts), f"a chart has no data: {charts}"
    sample_grid = charts[0]
    assert sample_grid.count("image") == 20, f"the sample grid should show 20 digit images: {sample_grid}"
    mean_images = next((traces for traces in charts[1:] if traces.count("image") == 10), None)
    assert mean_images is not None, f"no chart shows the 10 mean images: {charts}"
    assert any("bar" in traces for traces in charts), f"no bar chart (class counts, histogram): {charts}"
    expect(harness.exceptions(page)).to_have_count(0)
