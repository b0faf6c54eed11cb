"""Training augmentation that mimics drawing on a canvas: affine jitter and pen width.

The ranges match core/drawings.py's drawings after core/preprocess.py has
scaled them to the 20 px box. Rotation, stretch and shear are as drawn. Scale
and shift are small, because the box and the centring remove most of them,
and preprocessing brings pen widths close to MNIST's own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_ROTATION_DEG = 12.0
SCALE_RANGE = (0.9, 1.1)
# Aspect ratio: x is scaled by s and y by 1/s, with log(s) uniform in +-MAX_LOG_STRETCH.
MAX_LOG_STRETCH = 0.15
MAX_SHIFT_PX = 1.0
MAX_SHEAR = 0.15
# Share of images made thicker by a 3x3 dilation (about 2 px wider). Nothing is made
# thinner: a 3x3 erosion left some MNIST digits with a twentieth of their ink, and
# core.preprocess widens a drawing's hairlines to MNIST's width anyway.
THICKEN_P = 0.15


def dilate(images: torch.Tensor) -> torch.Tensor:
    """Return the 3x3 maximum filter of (B, 1, H, W) images with values >= 0.

    Two passes of three shifted maxima, equal to F.max_pool2d(images, 3,
    stride=1, padding=1) but 4 to 20 times faster for 100 images of 28x28 on
    the CPU (torch 2.14.1, a busy 2-core VM), where max pooling took most of
    an augmented epoch's time."""
    padded = F.pad(images, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def augment_batch(xb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Randomly rotate, scale, stretch, shear and shift a batch, and thicken some of its strokes.

    xb: (B, 784) floats in [0, 1] on any device; returns the same shape and device.
    Random numbers come from `generator` (a CPU generator), so a seed gives the same batches."""
    b = xb.size(0)
    images = xb.reshape(b, 1, 28, 28)
    rand = torch.rand(b, 7, generator=generator).to(xb.device)

    angle = (rand[:, 0] * 2 - 1) * math.radians(MAX_ROTATION_DEG)
    scale = SCALE_RANGE[0] + rand[:, 1] * (SCALE_RANGE[1] - SCALE_RANGE[0])
    stretch = torch.exp((rand[:, 6] * 2 - 1) * MAX_LOG_STRETCH)
    shear = (rand[:, 2] * 2 - 1) * MAX_SHEAR
    shift = (rand[:, 3:5] * 2 - 1) * (MAX_SHIFT_PX * 2 / 28)  # grid units: 2 spans 28 px
    # theta maps output coordinates to input coordinates, so it is the inverse of the
    # wanted transform: dividing by scale makes the digit larger, and stretch > 1 makes
    # it wider and shorter.
    sx, sy = 1 / (scale * stretch), stretch / scale
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([cos * sx, (-sin + shear * cos) * sy, shift[:, 0]], dim=1),
        torch.stack([sin * sx, (cos + shear * sin) * sy, shift[:, 1]], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, images.shape, align_corners=False)
    images = F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")

    if THICKEN_P > 0:
        thicken = rand[:, 5].view(b, 1, 1, 1) < THICKEN_P
        images = torch.where(thicken, dilate(images), images)
    return images.reshape(b, -1)
