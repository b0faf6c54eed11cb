"""Devices and the loader that keeps a whole split on one device."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


def get_default_device() -> torch.device:
    """Pick the GPU if one is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_device(name: str) -> torch.device:
    """Turn "auto", "cpu" or "cuda" into a device, with a clear error when CUDA is absent."""
    if name == "auto":
        return get_default_device()
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' is not available on this machine: choose 'cpu' or 'auto'")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r} is invalid: choose 'auto', 'cpu' or 'cuda'")
    return torch.device(name)


def device_label(device: torch.device) -> str:
    """Return "CPU" or the CUDA device's name, for people to read."""
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    return "CPU"


def to_device(data, device: torch.device):
    """Move a tensor, or a list or tuple of tensors, to the device."""
    if isinstance(data, (list, tuple)):
        return [to_device(x, device) for x in data]
    return data.to(device, non_blocking=True)


class DeviceDataLoader:
    """Yield (images, labels) batches that are already on the device.

    The tutorial wraps a DataLoader and copies every batch to the device. This
    loader keeps the same interface (`__iter__` and `__len__`) but copies the
    whole split to the device once, as float32 in [0, 1] of shape (N, 784),
    and builds each batch by indexing with a fresh permutation every epoch.
    That removes the per-image Python work that dominates the tutorial's epoch.

    images: (N, 28, 28) uint8; labels: (N,) int64. `transform`, if given, is
    applied to each (B, 784) float batch on the device (used for augmentation).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 device: torch.device, shuffle: bool = True, seed: int = 0,
                 transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None):
        if batch_size < 1:
            raise ValueError(f"batch size {batch_size} is invalid: choose a value of at least 1")
        self.device = torch.device(device)
        self.images = images.reshape(len(images), -1).to(self.device, non_blocking=True)
        self.images = self.images.float().div_(255)
        self.labels = labels.to(self.device, non_blocking=True)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.transform = transform
        # The generator lives on the CPU so the same seed gives the same order on every device.
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.device, non_blocking=True)
        else:
            order = None
        for start in range(0, n, self.batch_size):
            if order is None:
                xb = self.images[start:start + self.batch_size]
                yb = self.labels[start:start + self.batch_size]
            else:
                idx = order[start:start + self.batch_size]
                xb = self.images.index_select(0, idx)
                yb = self.labels.index_select(0, idx)
            if self.transform is not None:
                xb = self.transform(xb, self.generator)
            yield xb, yb
