"""Shared fixtures for the unit tests: the real MNIST, loaded once per session."""

import pytest
import torch

from core import data

# One intra-op thread for every test. On a 2-core machine with other processes
# using the CPU, one epoch of the tutorial model on 48,000 images took 18 s with
# torch's default of one thread per core and 0.4 s with one thread (torch 2.14.1).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mnist() -> data.Splits:
    """The real MNIST from the verified data cache (fetched into it when missing)."""
    return data.load(data.MNIST)
