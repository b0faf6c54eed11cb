"""Tests for core.augment on real MNIST training images."""

import pytest
import torch
import torch.nn.functional as F

from core import augment


@pytest.fixture(scope="module")
def batch(mnist):
    """100 real training images as (100, 784) floats in [0, 1], as the loader yields them."""
    return mnist.train_images[:100].reshape(100, -1).div(255)


def test_dilate_matches_max_pool(batch):
    images = batch.reshape(-1, 1, 28, 28)
    assert torch.equal(augment.dilate(images), F.max_pool2d(images, 3, stride=1, padding=1))


def test_augment_batch_is_seeded(batch):
    first = augment.augment_batch(batch, torch.Generator().manual_seed(3))
    second = augment.augment_batch(batch, torch.Generator().manual_seed(3))
    other = augment.augment_batch(batch, torch.Generator().manual_seed(4))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_augment_batch_shape_and_range(batch):
    out = augment.augment_batch(batch, torch.Generator().manual_seed(0))
    assert out.shape == batch.shape
    assert out.dtype == batch.dtype
    assert out.min() >= 0
    assert out.max() <= 1
    assert not torch.equal(out, batch)


def test_augment_batch_keeps_digits_whole(batch):
    """Small jitter and thickening: no image loses more than a third of its ink."""
    out = augment.augment_batch(batch, torch.Generator().manual_seed(1))
    ratio = out.sum(dim=1) / batch.sum(dim=1)
    assert ratio.min() > 0.67


def test_augment_batch_without_ranges_is_identity(batch, monkeypatch):
    for name, value in [("MAX_ROTATION_DEG", 0.0), ("SCALE_RANGE", (1.0, 1.0)), ("MAX_LOG_STRETCH", 0.0),
                        ("MAX_SHIFT_PX", 0.0), ("MAX_SHEAR", 0.0), ("THICKEN_P", 0.0)]:
        monkeypatch.setattr(augment, name, value)
    out = augment.augment_batch(batch, torch.Generator().manual_seed(0))
    assert torch.allclose(out, batch, atol=1e-5)


def test_augment_batch_thickens_every_image(batch, monkeypatch):
    for name, value in [("MAX_ROTATION_DEG", 0.0), ("SCALE_RANGE", (1.0, 1.0)), ("MAX_LOG_STRETCH", 0.0),
                        ("MAX_SHIFT_PX", 0.0), ("MAX_SHEAR", 0.0), ("THICKEN_P", 1.0)]:
        monkeypatch.setattr(augment, name, value)
    out = augment.augment_batch(batch, torch.Generator().manual_seed(0))
    assert torch.allclose(out, augment.dilate(batch.reshape(-1, 1, 28, 28)).reshape(100, -1), atol=1e-5)
