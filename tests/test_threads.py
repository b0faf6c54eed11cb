"""Tests for the CPU thread count that training uses, and for the loader's uint8 storage."""

import pytest
import torch

from core.config import Phase, TrainConfig
from core.device import (
    DEFAULT_THREADS,
    SINGLE_THREAD_MAX_PARAMETERS,
    DeviceDataLoader,
    choose_threads,
    cpu_threads,
)
from core.training import prepare_run, train_phases

CPU = torch.device("cpu")
SMALL_RUN = TrainConfig(hidden=(32,), phases=(Phase(1, 0.5),), subset=1000, device="cpu")


@pytest.fixture
def two_threads():
    """Set two intra-op threads for the test, so a switch to one is visible; restore the count after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("parameters", [25_450, 203_530, SINGLE_THREAD_MAX_PARAMETERS - 1])
def test_choose_threads_small_model(parameters):
    assert choose_threads(parameters) == 1


@pytest.mark.parametrize("parameters", [SINGLE_THREAD_MAX_PARAMETERS, 5_824_522])
def test_choose_threads_large_model(parameters):
    assert choose_threads(parameters) == DEFAULT_THREADS


def test_cpu_threads_restores_count(two_threads):
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_cpu_threads_restores_after_error(two_threads):
    with pytest.raises(RuntimeError, match="inside"):
        with cpu_threads(1):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == 2


def test_train_phases_small_model_one_thread(mnist, two_threads):
    state = prepare_run(SMALL_RUN, mnist, CPU)
    seen = []

    train_phases(state, SMALL_RUN.phases, callback=lambda progress: seen.append(torch.get_num_threads()))

    assert seen
    assert set(seen) == {1}
    assert torch.get_num_threads() == 2


def test_train_phases_explicit_threads(mnist, two_threads):
    state = prepare_run(SMALL_RUN, mnist, CPU)
    state.threads = 2
    seen = []

    with cpu_threads(1):
        train_phases(state, SMALL_RUN.phases, callback=lambda progress: seen.append(torch.get_num_threads()))
        assert torch.get_num_threads() == 1

    assert set(seen) == {2}


def test_loader_keeps_uint8_on_device(mnist):
    loader = DeviceDataLoader(mnist.test_images[:500], mnist.test_labels[:500], 100, CPU, shuffle=False)

    assert loader.images.dtype == torch.uint8
    assert loader.images.shape == (500, 784)
    xb, _ = next(iter(loader))
    assert xb.dtype == torch.float32
    assert torch.equal(xb, mnist.test_images[:100].reshape(100, -1).float() / 255)
    assert loader.images.dtype == torch.uint8


def test_loader_batches_leave_storage_unchanged(mnist):
    loader = DeviceDataLoader(mnist.test_images[:200], mnist.test_labels[:200], 100, CPU, shuffle=False)
    stored = loader.images.clone()

    for _ in range(2):
        for xb, _ in loader:
            xb.mul_(0)

    assert torch.equal(loader.images, stored)


def test_loader_rejects_float_images(mnist):
    images = mnist.test_images[:10].float() / 255
    with pytest.raises(ValueError, match="images of dtype torch.float32 are invalid: pass uint8"):
        DeviceDataLoader(images, mnist.test_labels[:10], 5, CPU)
