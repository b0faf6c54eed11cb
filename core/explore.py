"""Numbers the Dataset page shows: class counts, mean images, pixel histogram."""

from __future__ import annotations

import numpy as np
import torch

from core.data import Splits, split_indices


def class_counts(labels: torch.Tensor, num_classes: int = 10) -> np.ndarray:
    return torch.bincount(labels.long(), minlength=num_classes).numpy()


def split_class_counts(splits: Splits, val_pct: float = 0.2, seed: int = 42) -> dict[str, np.ndarray]:
    """Images per class in the training, validation and test parts."""
    train_idx, val_idx = split_indices(len(splits.train_labels), val_pct, seed)
    return {
        "train": class_counts(splits.train_labels[torch.from_numpy(train_idx)]),
        "validation": class_counts(splits.train_labels[torch.from_numpy(val_idx)]),
        "test": class_counts(splits.test_labels),
    }


def mean_images(images: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> np.ndarray:
    """Mean image of each class: (num_classes, 28, 28) floats in [0, 255]."""
    sums = torch.zeros(num_classes, 28 * 28, dtype=torch.float64)
    sums.index_add_(0, labels.long(), images.reshape(len(images), -1).double())
    counts = torch.bincount(labels.long(), minlength=num_classes).clamp(min=1).double()
    return (sums / counts[:, None]).reshape(num_classes, 28, 28).numpy()


def pixel_histogram(images: torch.Tensor, bins: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of pixel values 0..255: (counts, bin edges)."""
    counts = torch.histc(images.float(), bins=bins, min=0, max=256).numpy()
    return counts, np.linspace(0, 256, bins + 1)


def sample_indices(labels: torch.Tensor, digits: list[int] | None, count: int, seed: int) -> np.ndarray:
    """`count` random indices whose label is in `digits` (all classes when None or empty)."""
    candidates = np.arange(len(labels)) if not digits else np.flatnonzero(np.isin(labels.numpy(), digits))
    rng = np.random.default_rng(seed)
    return rng.choice(candidates, size=min(count, len(candidates)), replace=False)
