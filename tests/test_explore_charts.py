"""Dataset statistics and the Plotly figures of the Dataset, Train and Predict pages."""

import numpy as np
import plotly.graph_objects as go
import torch

from core import charts, explore
from core.training import History


def test_split_class_counts_add_up(mnist):
    counts = explore.split_class_counts(mnist, val_pct=0.2, seed=42)
    assert counts["train"].sum() == 48_000
    assert counts["validation"].sum() == 12_000
    assert counts["test"].sum() == 10_000
    # The official test set has 980 zeros and 1,135 ones.
    assert counts["test"][0] == 980
    assert counts["test"][1] == 1_135


def test_mean_images_match_per_class_means(mnist):
    images, labels = mnist.test_images[:2000], mnist.test_labels[:2000]
    means = explore.mean_images(images, labels)
    assert means.shape == (10, 28, 28)
    expected = images[labels == 3].double().mean(dim=0).numpy()
    assert np.allclose(means[3], expected)


def test_pixel_histogram_counts_every_pixel(mnist):
    images = mnist.test_images[:500]
    counts, edges = explore.pixel_histogram(images, bins=32)
    assert counts.sum() == images.numel()
    assert edges[0] == 0
    assert edges[-1] == 256
    assert counts[0] > counts[1:].sum()  # most pixels are background


def test_sample_indices_filter_by_class(mnist):
    picked = explore.sample_indices(mnist.train_labels, [3, 5], 20, seed=1)
    assert len(picked) == 20
    assert set(mnist.train_labels[torch.from_numpy(picked)].tolist()) <= {3, 5}
    assert np.array_equal(picked, explore.sample_indices(mnist.train_labels, [3, 5], 20, seed=1))


def test_thin_batch_losses_keeps_short_curves():
    x, y = charts.thin_batch_losses([1.0, 2.0, 3.0], per_epoch=3)
    assert np.allclose(x, [1 / 3, 2 / 3, 1.0])
    assert np.allclose(y, [1.0, 2.0, 3.0])


def test_thin_batch_losses_averages_long_curves():
    losses = list(np.arange(4800.0))
    x, y = charts.thin_batch_losses(losses, per_epoch=480)
    assert len(x) == len(y) == charts.MAX_BATCH_POINTS
    assert x[-1] == 10.0  # the last point sits at the end of epoch 10
    assert y[0] == np.mean(losses[:8])
    assert np.isclose(np.mean(y), np.mean(losses))


def test_training_curves_one_trace_per_panel_per_run():
    history = History(epochs=[{"epoch": 0, "val_loss": 2.3, "val_acc": 0.1},
                              {"epoch": 1, "val_loss": 0.3, "val_acc": 0.9}],
                      batch_loss=[2.0, 1.0, 0.5], batches_per_epoch=3)
    fig = charts.training_curves([("a", history), ("b", history)], epochs_total=5)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 6
    assert list(fig.data[1].y) == [0.1, 0.9]
    assert list(fig.layout.xaxis.range) == [-0.2, 5.2]


def test_probability_bars_highlight_the_top_class():
    probabilities = np.full(10, 0.05)
    probabilities[7] = 0.55
    fig = charts.probability_bars(probabilities, [str(d) for d in range(10)])
    colors = fig.data[0].marker.color
    assert colors[7] != colors[0]
    assert fig.data[0].text[7] == "55%"


def test_image_grid_titles_every_panel():
    images = np.zeros((7, 28, 28), np.uint8)
    fig = charts.image_grid(images, [f"img {i}" for i in range(7)], cols=5)
    assert sorted(a.text for a in fig.layout.annotations) == sorted(f"img {i}" for i in range(7))
