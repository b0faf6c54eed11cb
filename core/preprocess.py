"""Turn a drawing from the canvas into the 28x28 input an MNIST model expects.

MNIST's own recipe (LeCun et al.): each digit was scaled to fit a 20x20 box,
keeping its aspect ratio, then placed in a 28x28 image so that its centre of
mass sits at the centre. Pixels here follow training: floats in [0, 1],
ink bright on a dark background.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# Below this much ink (in 0..1 units, summed) the canvas counts as empty.
MIN_INK = 1.0
# MNIST's strokes are about 2-3 px wide in 28x28; a drawing's strokes are
# scaled to this width (in the 20 px box) before the final resize.
TARGET_STROKE_PX = 2.5


def ink_from_rgba(rgba: np.ndarray) -> np.ndarray:
    """Return ink intensity in [0, 1], (H, W) float32, from an RGBA uint8 canvas image.

    Works for coloured or white strokes on a dark background and for strokes on
    a transparent background: ink is brightness weighted by opacity, and on an
    opaque light background the image is inverted."""
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] not in (3, 4):
        raise ValueError(f"canvas image has shape {rgba.shape}: expected (height, width, 4) RGBA")
    rgb = rgba[..., :3].astype(np.float32) / 255
    alpha = rgba[..., 3].astype(np.float32) / 255 if rgba.shape[2] == 4 else np.ones(rgba.shape[:2], np.float32)
    if alpha.max() == 0:
        return np.zeros(rgba.shape[:2], np.float32)
    # Any colour counts as ink: use the brightest channel, so blue ink is as strong as white.
    value = rgb.max(axis=2)
    opaque = alpha > 0.5
    if opaque.mean() > 0.5 and np.median(value[opaque]) > 0.5:
        value = 1 - rgb.min(axis=2)  # dark ink on a light, opaque background
    return (value * alpha).astype(np.float32)


def _bounding_box(ink: np.ndarray, threshold: float = 0.1):
    rows = np.flatnonzero(ink.max(axis=1) > threshold)
    cols = np.flatnonzero(ink.max(axis=0) > threshold)
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def estimate_stroke_width(ink: np.ndarray, threshold: float = 0.5) -> float:
    """Estimate the pen width in pixels as ink area divided by skeleton length.

    The length is approximated by the number of ink pixels that have a non-ink
    neighbour, divided by two (each stroke has two edges)."""
    mask = ink > threshold
    area = mask.sum()
    if area == 0:
        return 0.0
    padded = np.pad(mask, 1)
    interior = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]) & mask
    edge = area - interior.sum()
    return float(max(2 * area / max(edge, 1), 1.0))


def steps(rgba: np.ndarray, normalise_stroke: bool = True) -> dict[str, np.ndarray] | None:
    """Run the pipeline and return every intermediate image, or None for an empty canvas.

    Keys, in order: "ink" (canvas size), "cropped", "stroke" (pen width
    normalised), "scaled" (longest side 20 px), "centred" (28x28, final)."""
    ink = ink_from_rgba(rgba)
    if ink.sum() < MIN_INK or ink.max() < 0.2:
        return None
    out = {"ink": ink}

    top, bottom, left, right = _bounding_box(ink)
    cropped = ink[top:bottom, left:right]
    out["cropped"] = cropped

    # Scale the pen width toward MNIST's before shrinking: a very thick pen
    # would fill the 20 px box, a hairline would vanish.
    longest = max(cropped.shape)
    stroke = cropped
    if normalise_stroke:
        width_at_20 = estimate_stroke_width(cropped) * 20 / longest
        t = torch.from_numpy(cropped)[None, None]
        radius = round((TARGET_STROKE_PX - width_at_20) / 2 * longest / 20)
        radius = int(np.clip(radius, -longest // 20, longest // 10))
        if radius > 0:
            t = F.max_pool2d(t, 2 * radius + 1, stride=1, padding=radius)
        elif radius < 0:
            t = -F.max_pool2d(-t, -2 * radius + 1, stride=1, padding=-radius)
        stroke = t[0, 0].numpy()
        if stroke.max() < 0.2:  # eroded away: keep the original strokes
            stroke = cropped
    out["stroke"] = stroke

    height, width = stroke.shape
    factor = 20 / max(height, width)
    new_h, new_w = max(1, round(height * factor)), max(1, round(width * factor))
    image = Image.fromarray((np.clip(stroke, 0, 1) * 255).astype(np.uint8))
    scaled = np.asarray(image.resize((new_w, new_h), Image.Resampling.LANCZOS), np.float32) / 255
    scaled = np.clip(scaled, 0, 1)
    out["scaled"] = scaled

    canvas = np.zeros((28, 28), np.float32)
    top0, left0 = (28 - new_h) // 2, (28 - new_w) // 2
    canvas[top0:top0 + new_h, left0:left0 + new_w] = scaled
    out["centred"] = shift_to_centre_of_mass(canvas)
    return out


def shift_to_centre_of_mass(image: np.ndarray) -> np.ndarray:
    """Shift a 28x28 image by whole pixels so its centre of mass is at (13.5, 13.5),
    the pixel-centre middle of the image, without cutting off ink."""
    total = image.sum()
    rows, cols = np.indices(image.shape)
    cy, cx = (rows * image).sum() / total, (cols * image).sum() / total
    dy, dx = int(round(13.5 - cy)), int(round(13.5 - cx))
    ys, xs = np.nonzero(image > 0)
    dy = int(np.clip(dy, -ys.min(), 27 - ys.max()))
    dx = int(np.clip(dx, -xs.min(), 27 - xs.max()))
    return np.roll(image, (dy, dx), axis=(0, 1))


def canvas_to_mnist(rgba: np.ndarray, normalise_stroke: bool = True) -> torch.Tensor | None:
    """Return the (1, 28, 28) float tensor in [0, 1] for a canvas RGBA image, or None if it is empty."""
    result = steps(rgba, normalise_stroke)
    if result is None:
        return None
    return torch.from_numpy(result["centred"].copy())[None]
