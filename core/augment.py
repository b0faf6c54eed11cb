"""Training augmentation that mimics drawing on a canvas: affine jitter and pen width."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_ROTATION_DEG = 15.0
SCALE_RANGE = (0.85, 1.15)
MAX_SHIFT_PX = 2.0
MAX_SHEAR = 0.2
# Share of images made thicker (3x3 dilation) and thinner (3x3 erosion).
THICKEN_P = 0.3
THIN_P = 0.15


def augment_batch(xb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Randomly rotate, scale, shear, shift and change the stroke width of a batch.

    xb: (B, 784) floats in [0, 1] on any device; returns the same shape and device.
    Random numbers come from `generator` (a CPU generator), so a seed gives the same batches."""
    b = xb.size(0)
    images = xb.reshape(b, 1, 28, 28)
    rand = torch.rand(b, 6, generator=generator).to(xb.device)

    angle = (rand[:, 0] * 2 - 1) * math.radians(MAX_ROTATION_DEG)
    scale = SCALE_RANGE[0] + rand[:, 1] * (SCALE_RANGE[1] - SCALE_RANGE[0])
    shear = (rand[:, 2] * 2 - 1) * MAX_SHEAR
    shift = (rand[:, 3:5] * 2 - 1) * (MAX_SHIFT_PX * 2 / 28)  # grid units: 2 spans 28 px
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([
        torch.stack([cos, -sin + shear * cos, shift[:, 0]], dim=1),
        torch.stack([sin, cos + shear * sin, shift[:, 1]], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, images.shape, align_corners=False)
    images = F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")

    pen = rand[:, 5].view(b, 1, 1, 1)
    thick = F.max_pool2d(images, 3, stride=1, padding=1)
    thin = -F.max_pool2d(-images, 3, stride=1, padding=1)
    images = torch.where(pen < THICKEN_P, thick, images)
    images = torch.where(pen > 1 - THIN_P, thin, images)
    return images.reshape(b, -1)
