"""Binary morphology for pen strokes: thinning to a skeleton and distance transforms.

Plain numpy, because the project has no SciPy or scikit-image. Sized for the
small images of the drawing pipeline (a few hundred pixels a side).
"""

from __future__ import annotations

import numpy as np


def _neighbours(image: np.ndarray) -> list[np.ndarray]:
    """Return the 8 neighbours of every pixel, clockwise from north (P2..P9 in Zhang & Suen)."""
    p = np.pad(image, 1)
    h, w = image.shape
    offsets = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
    return [p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in offsets]


def dilate(mask: np.ndarray) -> np.ndarray:
    """Return a binary mask grown by one pixel in all eight directions (3x3 dilation)."""
    p = np.pad(np.asarray(mask, dtype=bool), 1)
    rows = p[:, :-2] | p[:, 1:-1] | p[:, 2:]
    return rows[:-2] | rows[1:-1] | rows[2:]


def skeletonize(mask: np.ndarray) -> np.ndarray:
    """Thin a binary mask to lines one pixel wide, keeping its topology.

    Zhang & Suen, "A fast parallel algorithm for thinning digital patterns"
    (CACM 27(3), 1984). That algorithm deletes 2x2 blocks and diagonal lines
    two pixels thick entirely, so callers should pass strokes at least three
    pixels wide (dilate thin strokes first)."""
    image = np.asarray(mask, dtype=bool).copy()
    while True:
        changed = False
        for first_pass in (True, False):
            p2, p3, p4, p5, p6, p7, p8, p9 = _neighbours(image)
            ring = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            count = sum(n.astype(np.uint8) for n in ring[:8])
            # Number of 0 -> 1 transitions around the pixel: 1 means it lies on an edge, not a junction.
            transitions = sum((~a & b).astype(np.uint8) for a, b in zip(ring[:-1], ring[1:]))
            if first_pass:
                side = ~(p2 & p4 & p6) & ~(p4 & p6 & p8)
            else:
                side = ~(p2 & p4 & p8) & ~(p2 & p6 & p8)
            delete = image & (count >= 2) & (count <= 6) & (transitions == 1) & side
            if delete.any():
                image &= ~delete
                changed = True
        if not changed:
            return image


def distance_transform(mask: np.ndarray) -> np.ndarray:
    """Return the Euclidean distance in pixels from every pixel to the nearest True pixel.

    float32, same shape as `mask`; every pixel is inf when `mask` has no True
    pixel. Exact: the squared distance is separable, so the columns are solved
    first with two running scans, then every row by brute force over its
    columns (O(h * w^2) work, fine for images a few hundred pixels wide)."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    if not mask.any():
        return np.full((h, w), np.inf, np.float32)

    # Pass 1: distance to the nearest True pixel in the same column.
    rows = np.arange(h)[:, None]
    far = 2 * (h + w)
    above = np.maximum.accumulate(np.where(mask, rows, -far), axis=0)
    below = np.minimum.accumulate(np.where(mask, rows, far)[::-1], axis=0)[::-1]
    vertical = np.minimum(rows - above, below - rows).astype(np.float32)
    squared = vertical ** 2

    # Pass 2: d^2(i, j) = min over k of squared(i, k) + (j - k)^2, in blocks of rows to bound memory.
    cols = np.arange(w, dtype=np.float32)
    offsets = (cols[:, None] - cols[None, :]) ** 2  # (j, k)
    out = np.empty((h, w), np.float32)
    block = max(1, 2_000_000 // (w * w))
    for start in range(0, h, block):
        chunk = squared[start:start + block]  # (b, k)
        out[start:start + block] = (chunk[:, None, :] + offsets[None]).min(axis=2)
    return np.sqrt(out)
