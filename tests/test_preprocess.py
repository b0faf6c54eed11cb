"""Tests for core.preprocess: canvas image to MNIST input, and the Predict page's hints."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core import drawings, preprocess
from core.drawings import CANVAS_PX, Style
from core.model import MnistModel, predict_proba

# An upright, unstretched digit in the middle of the canvas, with MNIST's pen
# width relative to its size (0.11), white on black.
PLAIN = Style(size_px=200.0, pen_px=22.0, rotation_deg=0.0, stretch=1.0, shear=0.0, position=(0.5, 0.5),
              encoding="white_on_black", colour=(255, 255, 255), background=(0, 0, 0))
CONFIDENT = np.array([0.01] * 9 + [0.91])


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(image.shape)
    return float((rows * image).sum() / image.sum()), float((cols * image).sum() / image.sum())


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist.test_images.numpy()


@pytest.fixture(scope="module")
def quick_model(mnist):
    """The tutorial's 784-32-10 model after 3 epochs on 10,000 real training images (a few seconds)."""
    torch.manual_seed(0)
    model = MnistModel((32,))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    images = mnist.train_images[:10_000].float().div(255).reshape(-1, 784)
    labels = mnist.train_labels[:10_000]
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        for idx in torch.randperm(len(labels), generator=generator).split(100):
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            loss.backward()
            opt.step()
            opt.zero_grad()
    return model.eval()


# --- canvas_to_mnist and steps ---

def test_small_off_centre_digit_is_centred(digits):
    small = replace(PLAIN, size_px=60.0, pen_px=6.0, position=(0.05, 0.9))
    image = preprocess.canvas_to_mnist(drawings.draw(digits[0], small))
    assert image.shape == (1, 28, 28)
    assert image.dtype == torch.float32
    cy, cx = centre_of_mass(image[0].numpy())
    assert abs(cy - preprocess.CENTRE) <= 1
    assert abs(cx - preprocess.CENTRE) <= 1


def test_longest_side_is_20_px(digits):
    for index, style in [(0, replace(PLAIN, size_px=60.0, pen_px=6.0, position=(0.9, 0.1))),
                         (1, replace(PLAIN, stretch=1.3)),
                         (2, replace(PLAIN, size_px=250.0, pen_px=5.0))]:
        stages = preprocess.steps(drawings.draw(digits[index], style))
        assert max(stages["scaled"].shape) == 20
        top, bottom, left, right = preprocess.bounding_box(stages["centred"])
        assert max(bottom - top, right - left) in (19, 20)


def test_small_digit_reads_like_large_one(digits):
    large = preprocess.canvas_to_mnist(drawings.draw(digits[4], PLAIN))
    small = preprocess.canvas_to_mnist(
        drawings.draw(digits[4], replace(PLAIN, size_px=50.0, pen_px=5.5, position=(1.0, 0.0))))
    assert (large - small).abs().mean() < 0.05


def test_output_range_and_steps(digits):
    stages = preprocess.steps(drawings.draw(digits[5], PLAIN))
    assert list(stages) == ["ink", "cropped", "stroke", "scaled", "centred"]
    assert stages["ink"].shape == (CANVAS_PX, CANVAS_PX)
    assert stages["centred"].shape == (28, 28)
    for name, image in stages.items():
        assert image.dtype == np.float32, name
        assert image.min() >= 0, name
        assert image.max() <= 1, name


@pytest.mark.parametrize("rgba", [
    pytest.param(np.dstack([np.zeros((280, 280, 3), np.uint8), np.full((280, 280), 255, np.uint8)]),
                 id="opaque-black"),
    pytest.param(np.zeros((280, 280, 4), np.uint8), id="fully-transparent"),
    pytest.param(np.full((280, 280, 4), 255, np.uint8), id="opaque-white"),
    pytest.param(np.full((280, 280, 3), 30, np.uint8), id="rgb-grey"),
])
def test_empty_canvas_gives_none(rgba):
    assert preprocess.canvas_to_mnist(rgba) is None
    assert preprocess.steps(rgba) is None


def test_faint_speck_gives_none():
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[100, 100, :3] = 255  # one white pixel: less ink than MIN_INK
    assert preprocess.canvas_to_mnist(rgba) is None


@pytest.mark.parametrize("shape, dtype", [((280, 280), np.uint8), ((280, 280, 2), np.uint8),
                                          ((280, 280, 4), np.float32)])
def test_invalid_image_raises(shape, dtype):
    with pytest.raises(ValueError, match="canvas image has"):
        preprocess.canvas_to_mnist(np.zeros(shape, dtype))


def test_encodings_give_same_image(digits):
    coverage = drawings.render(digits[6], replace(PLAIN, pen_px=14.0, rotation_deg=8.0))
    reference = preprocess.canvas_to_mnist(drawings.encode(coverage, "white_on_black"))
    for encoding, colour, background in [("colour_on_black", (230, 40, 90), (0, 0, 0)),
                                         ("colour_on_black", (40, 120, 255), (0, 0, 0)),
                                         ("colour_on_transparent", (255, 255, 255), (0, 0, 0)),
                                         ("colour_on_transparent", (0, 0, 0), (0, 0, 0)),
                                         ("dark_on_light", (0, 0, 0), (255, 255, 255)),
                                         ("dark_on_light", (60, 20, 20), (238, 238, 238))]:
        image = preprocess.canvas_to_mnist(drawings.encode(coverage, encoding, colour, background))
        difference = (image - reference).abs()
        assert difference.mean() < 0.01, (encoding, colour)
        assert difference.max() < 0.3, (encoding, colour)


def test_rgb_without_alpha_reads_like_rgba(digits):
    rgba = drawings.draw(digits[7], PLAIN)
    assert torch.equal(preprocess.canvas_to_mnist(rgba[..., :3]), preprocess.canvas_to_mnist(rgba))


def test_stroke_width_is_clamped(digits):
    """A hairline is widened and a brush eroded to the bounds around MNIST's stroke width."""
    target = preprocess.TARGET_STROKE_PX * preprocess.WORK_PX / preprocess.BOX_PX
    low, high = preprocess.MIN_STROKE_RATIO * target, preprocess.MAX_STROKE_RATIO * target
    hairline = drawings.draw(digits[8], replace(PLAIN, pen_px=2.0))
    brush = drawings.draw(digits[8], replace(PLAIN, pen_px=60.0))

    hairline_width = preprocess.estimate_stroke_width(preprocess.steps(hairline)["stroke"])
    assert hairline_width == pytest.approx(low, rel=0.2)
    unevened = preprocess.estimate_stroke_width(preprocess.steps(hairline, normalise_stroke=False)["stroke"])
    assert unevened < 0.5 * low

    brush_width = preprocess.estimate_stroke_width(preprocess.steps(brush)["stroke"])
    assert brush_width == pytest.approx(high, rel=0.2)
    unevened = preprocess.estimate_stroke_width(preprocess.steps(brush, normalise_stroke=False)["stroke"])
    assert unevened > 1.5 * high


def test_stroke_width_in_range_is_kept(digits):
    rgba = drawings.draw(digits[8], PLAIN)
    evened = preprocess.steps(rgba)
    unevened = preprocess.steps(rgba, normalise_stroke=False)
    assert np.array_equal(evened["stroke"], unevened["stroke"])


def test_estimate_stroke_width_of_bar():
    image = np.zeros((60, 60), np.float32)
    image[10:50, 20:29] = 1  # a bar 9 px wide
    assert preprocess.estimate_stroke_width(image) == pytest.approx(9, abs=1)
    assert preprocess.estimate_stroke_width(np.zeros((5, 5), np.float32)) == 0.0


def test_quick_model_reads_drawings(mnist, quick_model):
    """300 drawings of every encoding, pen width and size read well above chance (10%).

    With this model the pipeline reads about 0.90 of them, against 0.92 of the
    clean test set. Resizing the whole canvas reads 0.14. An earlier pipeline
    read 0.68, because it centred the digit half a pixel off MNIST's centre of
    mass and missed the transparent and light-background encodings."""
    images, labels, naive = [], [], []
    for drawing in drawings.generate(mnist.test_images.numpy(), mnist.test_labels.numpy(), n=300, seed=11):
        images.append(preprocess.canvas_to_mnist(drawing.rgba))
        ink = preprocess.ink_from_rgba(drawing.rgba)
        naive.append(torch.from_numpy(preprocess.resize(ink, 28, 28))[None])
        labels.append(drawing.label)
    labels = torch.tensor(labels)
    accuracy = (predict_proba(quick_model, torch.stack(images)).argmax(1) == labels).float().mean().item()
    naive_accuracy = (predict_proba(quick_model, torch.stack(naive)).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.8
    assert naive_accuracy < 0.8


# --- drawing_hints ---

def test_hints_none_for_good_drawing(digits):
    rgba = drawings.draw(digits[0], PLAIN)
    assert preprocess.drawing_hints(preprocess.steps(rgba), CONFIDENT) == []


def test_hints_for_empty_canvas():
    hints = preprocess.drawing_hints(None, CONFIDENT)
    assert len(hints) == 1
    assert "empty" in hints[0]


def test_hints_tiny_digit(digits):
    rgba = drawings.draw(digits[0], replace(PLAIN, size_px=22.0, pen_px=2.5))
    hints = preprocess.drawing_hints(preprocess.steps(rgba), CONFIDENT)
    assert len(hints) == 1
    assert "tiny" in hints[0]


def test_hints_nearly_empty():
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[140:144, 140:144] = 255  # a 4x4 dot
    hints = preprocess.drawing_hints(preprocess.steps(rgba), CONFIDENT)
    assert any("hardly any ink" in hint for hint in hints)


def test_hints_thin_stroke(digits):
    rgba = drawings.draw(digits[0], replace(PLAIN, size_px=250.0, pen_px=2.0))
    hints = preprocess.drawing_hints(preprocess.steps(rgba), CONFIDENT)
    assert len(hints) == 1
    assert "very thin" in hints[0]


def test_hints_thick_stroke(digits):
    rgba = drawings.draw(digits[0], replace(PLAIN, size_px=150.0, pen_px=45.0))
    hints = preprocess.drawing_hints(preprocess.steps(rgba), CONFIDENT)
    assert len(hints) == 1
    assert "very thick" in hints[0]


def test_hints_touching_edge(digits):
    coverage = drawings.render(digits[0], replace(PLAIN, size_px=150.0, pen_px=16.0, position=(0.0, 0.5)))
    shifted = np.zeros_like(coverage)
    shifted[:, :-20] = coverage[:, 20:]  # move the digit 20 px left, past the edge
    rgba = drawings.encode(shifted, "white_on_black")
    hints = preprocess.drawing_hints(preprocess.steps(rgba), CONFIDENT)
    assert len(hints) == 1
    assert "edge" in hints[0]


def test_hints_low_confidence(digits):
    rgba = drawings.draw(digits[0], PLAIN)
    hints = preprocess.drawing_hints(preprocess.steps(rgba), np.full(10, 0.1))
    assert len(hints) == 1
    assert "unsure" in hints[0]
    assert "10%" in hints[0]


def test_hints_accept_tensor_probabilities(digits):
    rgba = drawings.draw(digits[0], PLAIN)
    assert preprocess.drawing_hints(preprocess.steps(rgba), torch.from_numpy(CONFIDENT)) == []
