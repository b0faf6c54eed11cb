"""Canvas-like drawings made from MNIST digits, for benchmarks and tests.

A drawing imitates what streamlit-drawable-canvas returns for a digit drawn
with the mouse: a (280, 280, 4) uint8 RGBA image of a round pen of constant
width with antialiased edges. The digit's shape comes from a real MNIST image,
which is upsampled, thresholded and thinned to a skeleton. The skeleton is
drawn again with a pen of random width, at a random size, position, rotation
and stretch, in one of the encodings the canvas can return.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core.morphology import distance_transform, skeletonize

CANVAS_PX = 280
# white_on_black: an opaque black background and white ink (the Predict page's canvas).
# colour_on_black: an opaque black background and ink of any bright colour.
# colour_on_transparent: a background with alpha 0, as the canvas returns with no
#   background colour, and ink of any colour with its coverage in the alpha channel.
# dark_on_light: an opaque light background and dark ink.
ENCODINGS = ("white_on_black", "colour_on_black", "colour_on_transparent", "dark_on_light")

# Longest side of the digit, in pixels, when it is thinned to a skeleton.
WORK_PX = 128
# Longest side of the digit on the canvas, in canvas pixels, drawn log-uniformly.
SIZE_RANGE_PX = (40.0, 270.0)
# Pen width as a fraction of the digit's longest side, drawn log-uniformly. MNIST's
# strokes are about 0.11 of it (2.25 px in the 20 px box, median over the test set).
PEN_RATIO_RANGE = (0.03, 0.25)
MIN_PEN_PX = 1.5
MAX_ROTATION_DEG = 12.0
# Stretch: x is scaled by s and y by 1/s, with log(s) uniform in +-MAX_LOG_STRETCH.
MAX_LOG_STRETCH = 0.15
MAX_SHEAR = 0.15
# The skeleton's distance field is padded by this many work pixels, more than the
# widest pen's radius (PEN_RATIO_RANGE[1] / 2 * WORK_PX = 16).
FIELD_MARGIN_PX = 20


@dataclass(frozen=True)
class Style:
    """The drawing parameters of one digit: size, pen, pose, position and encoding."""
    size_px: float  # longest side of the MNIST digit's bounding box on the canvas, before rotation and stretch
    pen_px: float  # pen diameter in canvas pixels
    rotation_deg: float  # counter-clockwise on screen
    stretch: float  # x scaled by stretch, y by 1 / stretch
    shear: float
    position: tuple[float, float]  # (x, y): where the digit sits in the free room, 0 = left/top, 1 = right/bottom
    encoding: str  # one of ENCODINGS
    colour: tuple[int, int, int]  # ink colour (RGB); unused for white_on_black
    background: tuple[int, int, int]  # background colour (RGB) of the opaque encodings


@dataclass(frozen=True)
class Drawing:
    """One generated drawing: the canvas image and where it came from."""
    rgba: np.ndarray  # (280, 280, 4) uint8
    label: int
    index: int  # index of the source image in the MNIST test set
    style: Style


def random_style(rng: np.random.Generator, encoding: str | None = None) -> Style:
    """Draw a random style; `encoding` fixes the encoding instead of drawing one."""
    size = math.exp(rng.uniform(math.log(SIZE_RANGE_PX[0]), math.log(SIZE_RANGE_PX[1])))
    ratio = math.exp(rng.uniform(math.log(PEN_RATIO_RANGE[0]), math.log(PEN_RATIO_RANGE[1])))
    rotation = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    stretch = math.exp(rng.uniform(-MAX_LOG_STRETCH, MAX_LOG_STRETCH))
    shear = rng.uniform(-MAX_SHEAR, MAX_SHEAR)
    position = (float(rng.uniform()), float(rng.uniform()))
    if encoding is None:
        encoding = ENCODINGS[rng.integers(len(ENCODINGS))]
    elif encoding not in ENCODINGS:
        raise ValueError(f"encoding {encoding!r} is invalid: choose one of {list(ENCODINGS)}")

    hue = rng.uniform()
    if encoding == "dark_on_light":
        colour = _hsv(hue, rng.uniform(0, 1), rng.uniform(0, 0.35))
        background = _hsv(rng.uniform(), rng.uniform(0, 0.1), rng.uniform(0.9, 1))
    elif encoding == "colour_on_transparent":
        colour = _hsv(hue, rng.uniform(0, 1), rng.uniform(0, 1))
        background = (0, 0, 0)
    else:
        colour = _hsv(hue, rng.uniform(0.3, 1), rng.uniform(0.7, 1))
        background = (0, 0, 0)
    return Style(size, max(MIN_PEN_PX, ratio * size), rotation, stretch, shear, position,
                 encoding, colour, background)


def _hsv(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return round(r * 255), round(g * 255), round(b * 255)


def skeleton_field(digit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Thin an MNIST digit and return (distance field, skeleton points).

    digit: (28, 28) uint8. The digit is cropped, upsampled with bicubic
    interpolation so its longest side is WORK_PX pixels, thresholded at half
    intensity and thinned. The field holds each work pixel's distance to the
    skeleton and is padded by FIELD_MARGIN_PX. The points are the skeleton's
    (x, y) coordinates in the field's pixels, shape (n, 2)."""
    image = np.asarray(digit, dtype=np.float32) / 255
    rows = np.flatnonzero(image.max(axis=1) > 0.1)
    cols = np.flatnonzero(image.max(axis=0) > 0.1)
    if len(rows) == 0:
        raise ValueError("digit image is empty: expected an MNIST digit with ink")
    top, bottom = max(rows[0] - 2, 0), min(rows[-1] + 3, 28)
    left, right = max(cols[0] - 2, 0), min(cols[-1] + 3, 28)
    factor = WORK_PX / max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)

    crop = torch.from_numpy(np.ascontiguousarray(image[top:bottom, left:right]))[None, None]
    size = (round((bottom - top) * factor), round((right - left) * factor))
    upsampled = F.interpolate(crop, size=size, mode="bicubic", align_corners=False)[0, 0].numpy()
    mask = np.pad(upsampled > 0.5, FIELD_MARGIN_PX)
    skeleton = skeletonize(mask)
    ys, xs = np.nonzero(skeleton)
    return distance_transform(skeleton), np.stack([xs, ys], axis=1).astype(np.float32)


def render(digit: np.ndarray, style: Style) -> np.ndarray:
    """Draw one digit with a style; return pen coverage in [0, 1], (280, 280) float32."""
    field, points = skeleton_field(digit)
    centre = (points.min(axis=0) + points.max(axis=0)) / 2

    # Work pixels -> canvas pixels: stretch and shear, rotate, then scale.
    angle = math.radians(style.rotation_deg)
    rotate = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    deform = np.array([[style.stretch, style.shear], [0.0, 1 / style.stretch]])
    scale = style.size_px / WORK_PX
    pen = style.pen_px

    # Shrink the digit (and pen) when it would not fit on the canvas with its pen.
    offsets = (points - centre) @ (rotate @ deform).T * scale
    extent = offsets.max(axis=0) - offsets.min(axis=0) + pen
    shrink = min(1.0, (CANVAS_PX - 2) / extent.max())
    scale, pen, offsets = scale * shrink, pen * shrink, offsets * shrink
    low = offsets.min(axis=0) - pen / 2
    room = CANVAS_PX - 2 - (offsets.max(axis=0) + pen / 2 - low)
    origin = 1 - low + np.asarray(style.position) * np.maximum(room, 0)

    # Canvas pixel centres -> work coordinates, then look up the distance to the skeleton.
    matrix = rotate @ deform * scale
    inverse = np.linalg.inv(matrix)
    grid = np.stack(np.meshgrid(np.arange(CANVAS_PX), np.arange(CANVAS_PX), indexing="xy"), axis=-1)
    work = (grid - origin) @ inverse.T + centre
    height, width = field.shape
    normalised = np.stack([work[..., 0] / (width - 1), work[..., 1] / (height - 1)], axis=-1) * 2 - 1
    distance = F.grid_sample(torch.from_numpy(field)[None, None],
                             torch.from_numpy(normalised.astype(np.float32))[None],
                             mode="bilinear", padding_mode="border", align_corners=True)[0, 0].numpy()

    # NOTE: work-pixel distances are converted with the size scale alone, ignoring stretch
    # and shear, so the pen of a stretched or sheared digit is slightly wider in one direction.
    coverage = np.clip(pen / 2 + 0.5 - distance * scale, 0, 1)
    return coverage.astype(np.float32)


def encode(coverage: np.ndarray, encoding: str, colour=(255, 255, 255),
           background=(0, 0, 0)) -> np.ndarray:
    """Turn pen coverage (H, W) in [0, 1] into the (H, W, 4) uint8 RGBA image the canvas returns."""
    cover = np.asarray(coverage, np.float32)[..., None]
    opaque = np.full(cover.shape[:2] + (1,), 255, np.uint8)
    if encoding == "white_on_black":
        rgb = np.repeat(cover * 255, 3, axis=2)
        return np.concatenate([np.rint(rgb).astype(np.uint8), opaque], axis=2)
    if encoding in ("colour_on_black", "dark_on_light"):
        ink, paper = np.asarray(colour, np.float32), np.asarray(background, np.float32)
        rgb = paper * (1 - cover) + ink * cover
        return np.concatenate([np.rint(rgb).astype(np.uint8), opaque], axis=2)
    if encoding == "colour_on_transparent":
        # Like a browser canvas: colour kept where there is any coverage, zero where alpha is 0.
        alpha = np.rint(cover * 255).astype(np.uint8)
        rgb = np.where(alpha > 0, np.asarray(colour, np.uint8), np.uint8(0))
        return np.concatenate([rgb.astype(np.uint8), alpha], axis=2)
    raise ValueError(f"encoding {encoding!r} is invalid: choose one of {list(ENCODINGS)}")


def draw(digit: np.ndarray, style: Style) -> np.ndarray:
    """Draw one MNIST digit (28, 28) uint8 as a (280, 280, 4) uint8 canvas image."""
    return encode(render(digit, style), style.encoding, style.colour, style.background)


def drawing_rng(seed: int, number: int) -> np.random.Generator:
    """Return the random generator of drawing `number`, so any drawing can be made on its own."""
    return np.random.default_rng([seed, number])


def generate(images, labels, n: int, seed: int = 0, encoding: str | None = None) -> Iterator[Drawing]:
    """Yield `n` drawings of MNIST test digits, the same ones for the same seed.

    images: (N, 28, 28) uint8 and labels: (N,) (numpy arrays or tensors). The
    source images are a seeded permutation of all N, so n <= N draws each
    at most once; drawing i depends only on (seed, i), not on n."""
    images, labels = np.asarray(images), np.asarray(labels)
    order = np.random.default_rng(seed).permutation(len(images))
    for number in range(n):
        index = int(order[number % len(order)])
        style = random_style(drawing_rng(seed, number), encoding)
        yield Drawing(draw(images[index], style), int(labels[index]), index, style)
