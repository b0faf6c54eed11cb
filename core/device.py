"""Devices and the loader that keeps a whole split on one device."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

# Models with fewer parameters than this train on one CPU thread. Their matmuls
# are too small for a second thread to gain much: about 20% per step for the
# 784-32-10 model on a lightly loaded 2-core VM. But intra-op threads that wait
# on each other made each step 3 to 50 times slower when another process kept
# a core busy (bench/epoch_speed.py --busy-core, torch 2.14.1).
# NOTE: the limit is a judgement from that one 2-core VM, not a measured crossover.
SINGLE_THREAD_MAX_PARAMETERS = 1_000_000

# torch's intra-op thread count when this module was imported: one per physical core unless
# OMP_NUM_THREADS or an earlier torch.set_num_threads set another count.
DEFAULT_THREADS = torch.get_num_threads()


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


def choose_threads(num_parameters: int) -> int:
    """Return the CPU thread count for training a model with this many parameters.

    One thread below SINGLE_THREAD_MAX_PARAMETERS, torch's default count above it."""
    if num_parameters < SINGLE_THREAD_MAX_PARAMETERS:
        return 1
    return DEFAULT_THREADS


@contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Run the enclosed block with `count` intra-op CPU threads, then restore the previous count.

    torch.set_num_threads applies to the calling thread (OpenMP and MKL keep the count per
    thread), and to threads that start parallel work for the first time after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def to_device(data, device: torch.device):
    """Move a tensor, or a list or tuple of tensors, to the device."""
    if isinstance(data, (list, tuple)):
        return [to_device(x, device) for x in data]
    return data.to(device, non_blocking=True)


class DeviceDataLoader:
    """Yield (images, labels) batches that are already on the device.

    The tutorial wraps a DataLoader and copies every batch to the device. This
    loader keeps the same interface (`__iter__` and `__len__`) but copies the
    whole split to the device once, as uint8 of shape (N, 784). Each epoch
    draws a fresh permutation, and each batch is an index_select of its rows,
    turned into float32 in [0, 1] as ToTensor does. That removes the
    per-image Python work that dominates the tutorial's epoch. Keeping uint8
    takes a quarter of float32's memory (38 MB instead of 151 MB for 48,000
    images) and was as fast per epoch on the CPU (bench/epoch_speed.py).

    images: (N, 28, 28) uint8; labels: (N,) int64. `transform`, if given, is
    applied to each (B, 784) float batch on the device (used for augmentation).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 device: torch.device, shuffle: bool = True, seed: int = 0,
                 transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None):
        if batch_size < 1:
            raise ValueError(f"batch size {batch_size} is invalid: choose a value of at least 1")
        if images.dtype != torch.uint8:
            raise ValueError(f"images of dtype {images.dtype} are invalid: pass uint8 pixels (0 to 255), "
                             "as core.data.load returns them")
        self.device = torch.device(device)
        self.images = images.reshape(len(images), -1).to(self.device, non_blocking=True)
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
            # The same values as ToTensor. float() always copies a uint8 batch, so div_ leaves self.images
            # alone. It was faster than uint8 / 255 for batches of 10,000 images (torch 2.14.1, CPU).
            xb = xb.float().div_(255)
            if self.transform is not None:
                xb = self.transform(xb, self.generator)
            yield xb, yb
