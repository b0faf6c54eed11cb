"""Tests for core.morphology: thinning, dilation and the distance transform."""

import numpy as np
import torch
import torch.nn.functional as F

from core.morphology import dilate, distance_transform, skeletonize


def brute_force_distance(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    rows, cols = np.indices(mask.shape)
    squared = (rows[..., None] - ys) ** 2 + (cols[..., None] - xs) ** 2
    return np.sqrt(squared.min(axis=-1))


def test_distance_transform_matches_brute_force():
    rng = np.random.default_rng(0)
    for shape, density in [((37, 53), 0.02), ((20, 20), 0.3), ((1, 9), 0.2), ((64, 7), 0.01)]:
        mask = rng.random(shape) < density
        mask[0, 0] = True
        assert np.allclose(distance_transform(mask), brute_force_distance(mask), atol=1e-4), shape


def test_distance_transform_of_empty_mask_is_inf():
    distance = distance_transform(np.zeros((4, 5), bool))
    assert distance.shape == (4, 5)
    assert np.isinf(distance).all()


def test_dilate_matches_max_pool():
    mask = np.random.default_rng(1).random((30, 41)) < 0.05
    pooled = F.max_pool2d(torch.from_numpy(mask)[None, None].float(), 3, stride=1, padding=1)[0, 0].numpy() > 0
    assert np.array_equal(dilate(mask), pooled)


def test_skeletonize_bar_gives_centre_line():
    mask = np.zeros((20, 40), bool)
    mask[7:14, 5:35] = True  # a bar 7 px thick and 30 px long
    skeleton = skeletonize(mask)
    rows, cols = np.nonzero(skeleton)
    assert set(rows) == {10}
    # Zhang-Suen thinning shortens each end of a bar by about half its thickness.
    assert cols.max() - cols.min() >= 20
    assert not (skeleton & ~mask).any()


def test_skeletonize_keeps_ring_closed():
    rows, cols = np.indices((40, 40))
    radius = np.hypot(rows - 19.5, cols - 19.5)
    ring = (radius > 10) & (radius < 16)
    skeleton = skeletonize(ring)
    # One pixel wide: no 2x2 block is fully set.
    blocks = skeleton[:-1, :-1] & skeleton[1:, :-1] & skeleton[:-1, 1:] & skeleton[1:, 1:]
    assert not blocks.any()
    # Still closed: a 4-connected fill from the corner, through pixels off the
    # skeleton, does not reach the centre (an 8-connected line blocks 4-connected paths).
    outside = np.zeros((42, 42), bool)
    outside[0, 0] = True
    free = np.pad(~skeleton, 1, constant_values=True)
    for _ in range(100):
        grown = outside.copy()
        grown[1:] |= outside[:-1]
        grown[:-1] |= outside[1:]
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        outside = grown & free
    assert outside[1, 1]
    assert not outside[21, 21]
