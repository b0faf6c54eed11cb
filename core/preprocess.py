"""Turn a drawing from the canvas into the 28x28 input an MNIST model expects.

MNIST's own recipe (LeCun et al.): each digit was scaled to fit a 20x20 box,
keeping its aspect ratio, then placed in a 28x28 image so that its centre of
mass sits at the centre. Pixels here follow training: floats in [0, 1],
ink bright on a dark background.

A drawing differs from MNIST in its pen: one width from hairline to a brush,
where MNIST's strokes are about 2.25 px wide in the 20 px box. So before the
final resize, strokes much thinner than MNIST's are widened and much wider
ones eroded.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.morphology import distance_transform, skeletonize

# Below this much ink (contrast with the background, 0..1 per pixel, summed) or
# this peak contrast the canvas counts as empty.
MIN_INK = 10.0
MIN_PEAK = 0.2
# Pixels above this share of the peak ink count as ink for the bounding box.
INK_THRESHOLD = 0.1
# The pen width is changed on the cropped drawing resized so its longest side
# is WORK_PX pixels: 4 work pixels per pixel of MNIST's 20 px box.
WORK_PX = 80
BOX_PX = 20
# Median stroke width of the MNIST test digits in the 20 px box, as estimate_stroke_width
# measures it on each digit upsampled 4x (bicubic) and thresholded at half intensity.
# The 10th and 90th percentiles are 1.55 and 3.25 px.
TARGET_STROKE_PX = 2.25
# Strokes from MIN_STROKE_RATIO to MAX_STROKE_RATIO times the target width are left as
# drawn. Thinner ones are widened to the lower bound, and wider ones eroded to the upper.
MIN_STROKE_RATIO = 0.8
MAX_STROKE_RATIO = 1.3
# MNIST's centre of mass, (row, column) in pixel indices: (14.0, 14.0) on average over the
# test set, with a standard deviation of 0.29 px, which is what shifting by whole pixels leaves.
CENTRE = 14.0


def ink_from_rgba(rgba: np.ndarray) -> np.ndarray:
    """Return the ink's contrast with the background in [0, 1], (H, W) float32, from a canvas image.

    rgba: (H, W, 4) or (H, W, 3) uint8. When most of the image's border is
    transparent, the ink is the opacity, whatever its colour. Otherwise the
    background colour is the median of the border, and the ink is each
    pixel's largest channel difference from it, so white or coloured ink on
    black and dark ink on a light background all work."""
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] not in (3, 4) or min(rgba.shape[:2]) < 2:
        raise ValueError(f"canvas image has shape {rgba.shape}: expected (height, width, 4) RGBA "
                         "or (height, width, 3) RGB")
    if rgba.dtype != np.uint8:
        raise ValueError(f"canvas image has dtype {rgba.dtype}: expected uint8")
    has_alpha = rgba.shape[2] == 4
    border = np.concatenate([rgba[0], rgba[-1], rgba[1:-1, 0], rgba[1:-1, -1]])
    if has_alpha and np.median(border[:, 3]) < 128:
        return rgba[..., 3].astype(np.float32) / 255
    background = np.median(border[:, :3], axis=0).astype(np.float32)
    rgb = rgba[..., :3].astype(np.float32)
    if has_alpha and (rgba[..., 3] < 255).any():
        # Partly transparent pixels on an opaque canvas are blended onto the background colour.
        opacity = rgba[..., 3:].astype(np.float32) / 255
        rgb = rgb * opacity + background * (1 - opacity)
    difference = np.abs(rgb - background)
    # Three np.maximum calls: numpy's max over a last axis of length 3 was ten times slower.
    return np.maximum(np.maximum(difference[..., 0], difference[..., 1]), difference[..., 2]) / 255


def bounding_box(ink: np.ndarray, threshold: float = INK_THRESHOLD) -> tuple[int, int, int, int]:
    """Return (top, bottom, left, right), bottom and right exclusive, of the pixels above `threshold`."""
    rows = np.flatnonzero(ink.max(axis=1) > threshold)
    cols = np.flatnonzero(ink.max(axis=0) > threshold)
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an image in [0, 1] with bilinear interpolation, antialiased when shrinking.

    The result is clipped to [0, 1] against rounding error."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    out = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return np.clip(out[0, 0].numpy(), 0, 1)


def scale_longest_side(image: np.ndarray, longest: int) -> np.ndarray:
    """Resize so the longest side is `longest` pixels, keeping the aspect ratio."""
    height, width = image.shape
    factor = longest / max(height, width)
    return resize(image, max(1, round(height * factor)), max(1, round(width * factor)))


def estimate_stroke_width(ink: np.ndarray, threshold: float = 0.5) -> float:
    """Estimate the pen width in pixels: twice the median distance from the skeleton to the background, less one.

    Returns 0.0 when nothing is above `threshold`. Costs a distance transform
    of the whole image: crop first."""
    mask = np.asarray(ink) > threshold
    if not mask.any():
        return 0.0
    skeleton = skeletonize(mask)
    inside = distance_transform(~np.pad(mask, 1))[1:-1, 1:-1]
    return float(max(2 * np.median(inside[skeleton]) - 1, 1.0))


def thicken(image: np.ndarray, radius: float) -> np.ndarray:
    """Widen the strokes of `image` by `radius` pixels on each side, with antialiased edges.

    The strokes are the pixels at half the image's peak or more, so a faint
    hairline still counts. The result is padded so the wider strokes fit."""
    margin = int(np.ceil(radius)) + 2
    padded = np.pad(image, margin)
    outside = distance_transform(padded >= 0.5 * padded.max())
    return np.maximum(padded, np.clip(radius + 0.5 - outside, 0, 1)).astype(np.float32)


def erode(image: np.ndarray, radius: float) -> np.ndarray:
    """Thin the strokes of `image` (thresholded at half ink) by `radius` pixels on each side."""
    mask = np.pad(image > 0.5, 1)
    inside = distance_transform(~mask)[1:-1, 1:-1]
    return np.clip(inside - radius, 0, 1).astype(np.float32)


def clamp_stroke_width(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Bring the pen width of `image` into [low, high] pixels, keeping the drawn shape.

    Thinner strokes are widened by a distance-based dilation and wider ones
    eroded, so a hairline and a brush both end up near MNIST's width. A brush
    may already have closed loops, which nothing here can reopen. An image
    that erosion would wipe out is returned unchanged."""
    measured = estimate_stroke_width(image)
    if measured < low:
        return thicken(image, (low - measured) / 2)
    if measured > high:
        eroded = erode(image, (measured - high) / 2)
        if eroded.max() >= 0.5:
            return eroded
    return image


def place_by_centre_of_mass(image: np.ndarray, size: int = 28, centre: float = CENTRE) -> np.ndarray:
    """Paste an image into a black size x size image with its centre of mass near (centre, centre).

    The shift is by whole pixels, as MNIST's was, and stops where ink would be cut off."""
    height, width = image.shape
    total = image.sum()
    rows, cols = np.indices(image.shape)
    cy, cx = (rows * image).sum() / total, (cols * image).sum() / total
    top = int(np.clip(round(centre - cy), 0, size - height))
    left = int(np.clip(round(centre - cx), 0, size - width))
    out = np.zeros((size, size), np.float32)
    out[top:top + height, left:left + width] = image
    return out


def steps(rgba: np.ndarray, normalise_stroke: bool = True) -> dict[str, np.ndarray] | None:
    """Run the pipeline and return every intermediate image, or None for an empty canvas.

    Keys, in order: "ink" (canvas size, peak scaled to 1), "cropped" (to the
    ink's bounding box), "stroke" (pen width brought near MNIST's, at WORK_PX),
    "scaled" (longest side 20 px), "centred" (28x28, the model's input).
    Raises ValueError for an image that is not (H, W, 3 or 4) uint8."""
    ink = ink_from_rgba(rgba)
    peak = float(ink.max())
    if peak < MIN_PEAK or ink.sum() < MIN_INK:
        return None
    ink = np.clip(ink / peak, 0, 1)
    out = {"ink": ink}

    top, bottom, left, right = bounding_box(ink)
    cropped = ink[top:bottom, left:right]
    out["cropped"] = cropped

    stroke = scale_longest_side(cropped, WORK_PX)
    if normalise_stroke:
        target = TARGET_STROKE_PX * WORK_PX / BOX_PX
        stroke = clamp_stroke_width(stroke, MIN_STROKE_RATIO * target, MAX_STROKE_RATIO * target)
    out["stroke"] = stroke

    top, bottom, left, right = bounding_box(stroke)
    out["scaled"] = scale_longest_side(stroke[top:bottom, left:right], BOX_PX)
    out["centred"] = place_by_centre_of_mass(out["scaled"])
    return out


def canvas_to_mnist(rgba: np.ndarray, normalise_stroke: bool = True) -> torch.Tensor | None:
    """Return the (1, 28, 28) float tensor in [0, 1] for a canvas RGBA image, or None if it is empty."""
    result = steps(rgba, normalise_stroke)
    if result is None:
        return None
    return torch.from_numpy(result["centred"].copy())[None]


# --- Hints for the Predict page: when a drawing is far from the training data ---

# The digit's longest side below this share of the canvas's shorter side is tiny.
TINY_FRACTION = 0.1
# Fewer ink pixels (at least half of the peak ink) than this is nearly empty.
MIN_INK_PIXELS = 30
# A top probability below this means the model is unsure.
LOW_CONFIDENCE = 0.5
# Pen width as a share of the digit's longest side; MNIST's is about 0.11 (2.25 of 20 px).
THIN_STROKE_RATIO = 0.035
THICK_STROKE_RATIO = 0.2


def drawing_hints(stages: dict[str, np.ndarray] | None, probabilities) -> list[str]:
    """Return plain-English hints for a drawing that is far from MNIST's digits, or [] when none applies.

    stages: the dict `steps` returns (it needs "ink" and "cropped"), or None for
    an empty canvas. probabilities: the model's 10 class probabilities."""
    if stages is None:
        return ["The canvas is empty: draw one digit."]
    ink, cropped = stages["ink"], stages["cropped"]
    hints = []

    longest = max(cropped.shape)
    canvas_side = min(ink.shape)
    if int((ink > 0.5).sum()) < MIN_INK_PIXELS:
        hints.append("There is hardly any ink: draw the whole digit with connected strokes.")
    elif longest < TINY_FRACTION * canvas_side:
        hints.append(f"The digit is tiny ({longest} px on a {canvas_side} px canvas): draw it larger, "
                     "filling most of the canvas.")

    width = estimate_stroke_width(cropped)
    if width and width < THIN_STROKE_RATIO * longest:
        hints.append(f"The strokes are very thin ({width:.0f} px for a {longest} px digit), far thinner "
                     "than MNIST's (about a ninth of the digit's size). They were widened before reading; "
                     "if the prediction is wrong, try a wider pen.")
    elif width > THICK_STROKE_RATIO * longest:
        hints.append(f"The strokes are very thick ({width:.0f} px for a {longest} px digit), so loops "
                     "and gaps may have closed up: draw the digit larger or with a thinner pen.")

    edge = max(ink[0].max(), ink[-1].max(), ink[:, 0].max(), ink[:, -1].max())
    if edge > INK_THRESHOLD:
        hints.append("The drawing touches the edge of the canvas, so part of it may be cut off: "
                     "draw it a little smaller and away from the edges.")

    top = float(np.max(np.asarray(probabilities, dtype=np.float64)))
    if top < LOW_CONFIDENCE:
        hints.append(f"The model is unsure (top probability {top:.0%}): the drawing looks unlike "
                     "its training digits. Try one clear digit, large and upright.")
    return hints
