"""Tests for core.drawings, the generator of canvas-like drawings of MNIST test digits."""

from dataclasses import replace

import numpy as np
import pytest

from core import drawings
from core.drawings import CANVAS_PX, ENCODINGS, Style
from core.preprocess import bounding_box, estimate_stroke_width

# An upright, unstretched digit in the middle of the canvas, white on black.
PLAIN = Style(size_px=200.0, pen_px=20.0, rotation_deg=0.0, stretch=1.0, shear=0.0, position=(0.5, 0.5),
              encoding="white_on_black", colour=(255, 255, 255), background=(0, 0, 0))


@pytest.fixture(scope="module")
def test_set(mnist):
    return mnist.test_images.numpy(), mnist.test_labels.numpy()


def test_generate_is_deterministic(test_set):
    first = list(drawings.generate(*test_set, n=4, seed=3))
    second = list(drawings.generate(*test_set, n=4, seed=3))
    for a, b in zip(first, second):
        assert a.index == b.index
        assert a.style == b.style
        assert np.array_equal(a.rgba, b.rgba)


def test_generate_depends_on_seed(test_set):
    first = list(drawings.generate(*test_set, n=4, seed=3))
    other = list(drawings.generate(*test_set, n=4, seed=4))
    assert [d.index for d in first] != [d.index for d in other]
    assert first[0].style != other[0].style


def test_generate_drawing_does_not_depend_on_count(test_set):
    few = list(drawings.generate(*test_set, n=2, seed=5))
    more = list(drawings.generate(*test_set, n=6, seed=5))
    for a, b in zip(few, more):
        assert np.array_equal(a.rgba, b.rgba)


def test_generate_labels_and_format(test_set):
    images, labels = test_set
    for drawing in drawings.generate(images, labels, n=8, seed=0):
        assert drawing.rgba.shape == (CANVAS_PX, CANVAS_PX, 4)
        assert drawing.rgba.dtype == np.uint8
        assert drawing.label == labels[drawing.index]
        assert drawing.style.encoding in ENCODINGS


def test_generate_draws_every_source_image_once(test_set):
    images, labels = test_set
    chosen = [d.index for d in drawings.generate(images[:30], labels[:30], n=30, seed=1)]
    assert sorted(chosen) == list(range(30))


def test_random_style_ranges():
    rng = np.random.default_rng(0)
    styles = [drawings.random_style(rng) for _ in range(500)]
    sizes = np.array([s.size_px for s in styles])
    ratios = np.array([s.pen_px / s.size_px for s in styles])
    assert sizes.min() >= drawings.SIZE_RANGE_PX[0]
    assert sizes.max() <= drawings.SIZE_RANGE_PX[1]
    assert min(s.pen_px for s in styles) >= drawings.MIN_PEN_PX
    assert ratios.max() <= drawings.PEN_RATIO_RANGE[1]
    assert max(abs(s.rotation_deg) for s in styles) <= drawings.MAX_ROTATION_DEG
    assert {s.encoding for s in styles} == set(ENCODINGS)


def test_random_style_rejects_unknown_encoding():
    with pytest.raises(ValueError, match="encoding 'sepia' is invalid"):
        drawings.random_style(np.random.default_rng(0), "sepia")


def test_render_size_and_position(test_set):
    images, _ = test_set
    coverage = drawings.render(images[0], PLAIN)
    top, bottom, left, right = bounding_box(coverage, 0.5)
    # The skeleton's longest side is about size_px; the pen adds half its width on each side.
    assert 0.85 * PLAIN.size_px <= max(bottom - top, right - left) <= PLAIN.size_px + PLAIN.pen_px + 2
    assert abs((top + bottom) / 2 - CANVAS_PX / 2) < 3
    assert abs((left + right) / 2 - CANVAS_PX / 2) < 3


@pytest.mark.parametrize("position", [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0)])
def test_render_keeps_digit_on_canvas(test_set, position):
    images, _ = test_set
    coverage = drawings.render(images[1], replace(PLAIN, size_px=270.0, pen_px=30.0, position=position))
    border = max(coverage[0].max(), coverage[-1].max(), coverage[:, 0].max(), coverage[:, -1].max())
    assert border < 0.5
    assert coverage.max() == 1.0


def test_render_position_moves_digit(test_set):
    images, _ = test_set
    left_top = drawings.render(images[2], replace(PLAIN, size_px=80.0, pen_px=8.0, position=(0.0, 0.0)))
    right_bottom = drawings.render(images[2], replace(PLAIN, size_px=80.0, pen_px=8.0, position=(1.0, 1.0)))
    top, _, left, _ = bounding_box(left_top, 0.5)
    _, bottom, _, right = bounding_box(right_bottom, 0.5)
    assert top <= 3
    assert left <= 3
    assert bottom >= CANVAS_PX - 3
    assert right >= CANVAS_PX - 3


@pytest.mark.parametrize("pen", [4.0, 12.0, 24.0])
def test_render_pen_width(test_set, pen):
    images, _ = test_set
    coverage = drawings.render(images[3], replace(PLAIN, pen_px=pen))
    top, bottom, left, right = bounding_box(coverage)
    assert estimate_stroke_width(coverage[top:bottom, left:right]) == pytest.approx(pen, rel=0.25)


def test_encode_white_on_black():
    coverage = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    rgba = drawings.encode(coverage, "white_on_black")
    assert (rgba[..., 3] == 255).all()
    assert (rgba[..., 0] == rgba[..., 1]).all()
    assert (rgba[..., 1] == rgba[..., 2]).all()
    assert rgba[0, 0, 0] == 0
    assert rgba[3, 3, 0] == 255


def test_encode_transparent_background():
    coverage = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    rgba = drawings.encode(coverage, "colour_on_transparent", colour=(10, 200, 30))
    assert tuple(rgba[0, 0]) == (0, 0, 0, 0)
    assert tuple(rgba[3, 3]) == (10, 200, 30, 255)
    # Antialiased edges: full colour, partial alpha, as a browser canvas returns them.
    assert tuple(rgba[1, 1, :3]) == (10, 200, 30)
    assert 0 < rgba[1, 1, 3] < 255


def test_encode_dark_on_light():
    coverage = np.array([[0.0, 1.0]], np.float32)
    rgba = drawings.encode(coverage, "dark_on_light", colour=(20, 20, 60), background=(250, 250, 240))
    assert tuple(rgba[0, 0]) == (250, 250, 240, 255)
    assert tuple(rgba[0, 1]) == (20, 20, 60, 255)


def test_encode_rejects_unknown_encoding():
    with pytest.raises(ValueError, match="encoding 'sepia' is invalid"):
        drawings.encode(np.zeros((2, 2), np.float32), "sepia")


def test_skeleton_field_rejects_empty_digit():
    with pytest.raises(ValueError, match="digit image is empty"):
        drawings.skeleton_field(np.zeros((28, 28), np.uint8))
