"""Tests for core.device's loader, core.training's loop and core.config's
TrainConfig, on the real MNIST."""

import math
import shlex
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from core import data
from core.config import Phase, TrainConfig
from core.device import DeviceDataLoader
from core.model import MnistModel
from core.train import build_parser, config_from_args
from core.training import (
    History,
    TrainingDiverged,
    accuracy,
    evaluate,
    fit,
    learning_problem,
    loss_batch,
    prepare_run,
    test_accuracy as measure_test_accuracy,
    train_phases,
)

CPU = torch.device("cpu")
# The loader tests also run on the GPU where there is one.
DEVICES = [
    pytest.param(CPU, id="cpu"),
    pytest.param(torch.device("cuda"), id="cuda",
                 marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")),
]


@pytest.fixture(scope="module")
def full_split(mnist):
    """The default 48,000 / 12,000 split of the real training images."""
    train_idx, val_idx = data.split_indices(len(mnist.train_labels))
    train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    return (mnist.train_images[train_idx], mnist.train_labels[train_idx],
            mnist.train_images[val_idx], mnist.train_labels[val_idx])


@pytest.fixture
def small_loaders(mnist):
    """5,000 real training images in batches of 100 and 2,000 held-out images."""
    train_dl = DeviceDataLoader(mnist.train_images[:5000], mnist.train_labels[:5000], 100, CPU, seed=1)
    valid_dl = DeviceDataLoader(mnist.train_images[50_000:52_000], mnist.train_labels[50_000:52_000],
                                1000, CPU, shuffle=False)
    return train_dl, valid_dl


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_weights(model, expected: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert set(state) == set(expected)
    for key, tensor in expected.items():
        assert torch.equal(state[key], tensor), key


def _learning_columns(history: History) -> list[tuple]:
    """The epoch values that do not depend on timing."""
    return [(e["epoch"], e["lr"], e["val_loss"], e["val_acc"], e["train_loss"]) for e in history.epochs]


# --- DeviceDataLoader --------------------------------------------------------

@pytest.mark.parametrize("batch_size, batches", [(1, 1000), (64, 16), (100, 10), (1000, 1), (5000, 1)])
def test_loader_len(mnist, batch_size, batches):
    loader = DeviceDataLoader(mnist.test_images[:1000], mnist.test_labels[:1000], batch_size, CPU)
    assert len(loader) == batches
    assert sum(1 for _ in loader) == batches


@pytest.mark.parametrize("batch_size", [0, -1])
def test_loader_rejects_batch_size(mnist, batch_size):
    with pytest.raises(ValueError, match=f"batch size {batch_size} is invalid"):
        DeviceDataLoader(mnist.test_images[:10], mnist.test_labels[:10], batch_size, CPU)


@pytest.mark.parametrize("device", DEVICES)
def test_loader_batches(mnist, device):
    loader = DeviceDataLoader(mnist.test_images[:1000], mnist.test_labels[:1000], 64, device)
    batches = list(loader)

    assert [len(xb) for xb, _ in batches] == [64] * 15 + [40]
    for xb, yb in batches:
        assert xb.shape[1:] == (784,)
        assert xb.dtype == torch.float32
        assert yb.dtype == torch.int64
        assert xb.device.type == device.type
        assert yb.device.type == device.type
        assert len(yb) == len(xb)
        assert xb.min() >= 0
        assert xb.max() <= 1
    assert max(xb.max() for xb, _ in batches) == 1.0


def _image_index(images: torch.Tensor) -> dict[bytes, int]:
    """Map each image's bytes to its position; the images must be distinct."""
    index = {image.numpy().tobytes(): i for i, image in enumerate(images)}
    assert len(index) == len(images), "the slice has duplicate images"
    return index


def _epoch_order(loader, index: dict[bytes, int], labels: torch.Tensor) -> list[int]:
    """Return the source position of every image in one epoch, checking each label."""
    order = []
    for xb, yb in loader:
        pixels = (xb * 255).round().to(torch.uint8).reshape(-1, 28, 28).cpu()
        for image, label in zip(pixels, yb.cpu()):
            position = index[image.numpy().tobytes()]
            assert label == labels[position]
            order.append(position)
    return order


@pytest.mark.parametrize("device", DEVICES)
def test_loader_labels_follow_images(mnist, device):
    images, labels = mnist.train_images[:1000], mnist.train_labels[:1000]
    index = _image_index(images)
    loader = DeviceDataLoader(images, labels, 96, device, seed=3)

    first = _epoch_order(loader, index, labels)
    second = _epoch_order(loader, index, labels)

    assert sorted(first) == list(range(1000))
    assert sorted(second) == list(range(1000))
    assert first != list(range(1000))
    assert first != second


def test_loader_without_shuffle_keeps_order(mnist):
    images, labels = mnist.train_images[:300], mnist.train_labels[:300]
    loader = DeviceDataLoader(images, labels, 64, CPU, shuffle=False)

    order = _epoch_order(loader, _image_index(images), labels)

    assert order == list(range(300))


def test_loader_seed_fixes_order(mnist):
    images, labels = mnist.train_images[:500], mnist.train_labels[:500]
    index = _image_index(images)
    first = DeviceDataLoader(images, labels, 50, CPU, seed=11)
    second = DeviceDataLoader(images, labels, 50, CPU, seed=11)
    other = DeviceDataLoader(images, labels, 50, CPU, seed=12)

    for _ in range(2):
        order = _epoch_order(first, index, labels)
        assert _epoch_order(second, index, labels) == order
        assert _epoch_order(other, index, labels) != order


# --- accuracy, loss_batch, evaluate ------------------------------------------

def test_accuracy_counts_argmax(mnist):
    labels = mnist.test_labels[:100]
    outputs = F.one_hot(labels, 10).float()
    outputs[:25] = F.one_hot((labels[:25] + 1) % 10, 10).float()

    result = accuracy(outputs, labels)

    assert result.dim() == 0
    assert result.item() == pytest.approx(0.75)
    assert accuracy(F.one_hot(labels, 10).float(), labels).item() == 1.0


def test_loss_batch_without_optimizer(small_loaders):
    train_dl, _ = small_loaders
    torch.manual_seed(0)
    model = MnistModel()
    before = _weights(model)
    xb, yb = next(iter(train_dl))

    loss, n, metric = loss_batch(model, F.cross_entropy, xb, yb, metric=accuracy)

    assert n == 100
    assert not loss.requires_grad
    assert loss.item() == pytest.approx(F.cross_entropy(model(xb), yb).item())
    assert metric.item() == pytest.approx(accuracy(model(xb), yb).item())
    _assert_same_weights(model, before)
    assert loss_batch(model, F.cross_entropy, xb, yb)[2] is None


def test_loss_batch_with_optimizer(small_loaders):
    train_dl, _ = small_loaders
    torch.manual_seed(0)
    model = MnistModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    xb, yb = next(iter(train_dl))
    expected_loss = F.cross_entropy(model(xb), yb).item()

    loss, n, _ = loss_batch(model, F.cross_entropy, xb, yb, opt)

    assert n == 100
    assert loss.item() == pytest.approx(expected_loss)
    assert all(p.grad is None for p in model.parameters())
    assert F.cross_entropy(model(xb), yb).item() < expected_loss


def test_evaluate_weights_by_batch_size(mnist):
    images, labels = mnist.test_images[:2500], mnist.test_labels[:2500]
    torch.manual_seed(0)
    model = MnistModel()
    model.train()
    whole = DeviceDataLoader(images, labels, 2500, CPU, shuffle=False)
    uneven = DeviceDataLoader(images, labels, 1000, CPU, shuffle=False)

    loss, n, acc = evaluate(model, F.cross_entropy, whole, accuracy)
    uneven_loss, uneven_n, uneven_acc = evaluate(model, F.cross_entropy, uneven, accuracy)

    assert model.training
    assert n == uneven_n == 2500
    assert isinstance(loss, float)
    assert uneven_loss == pytest.approx(loss, rel=1e-5)
    assert uneven_acc == pytest.approx(acc, abs=1e-6)
    with torch.no_grad():
        outputs = model(images.float().div(255))
    assert loss == pytest.approx(F.cross_entropy(outputs, labels).item(), rel=1e-5)
    assert acc == pytest.approx(accuracy(outputs, labels).item(), abs=1e-6)
    assert evaluate(model, F.cross_entropy, uneven)[2] is None


# --- fit ---------------------------------------------------------------------

def test_fit_full_split_one_epoch(full_split):
    train_images, train_labels, val_images, val_labels = full_split
    train_dl = DeviceDataLoader(train_images, train_labels, 100, CPU, seed=42)
    valid_dl = DeviceDataLoader(val_images, val_labels, 10_000, CPU, shuffle=False)
    torch.manual_seed(42)
    model = MnistModel((32,))

    history = fit(1, 0.5, model, F.cross_entropy, train_dl, valid_dl)

    untrained, trained = history.epochs
    assert untrained["epoch"] == 0
    assert untrained["lr"] is None
    assert 0.03 < untrained["val_acc"] < 0.2
    assert untrained["val_loss"] == pytest.approx(math.log(10), abs=0.15)
    assert trained["epoch"] == 1
    assert trained["lr"] == 0.5
    assert trained["val_acc"] > 0.9
    assert trained["val_loss"] < 0.4
    assert trained["batches"] == 480
    assert trained["partial"] is False
    assert trained["images_per_s"] > 0
    assert history.batches_per_epoch == 480
    assert len(history.batch_loss) == 480
    assert history.stopped_early is False


@pytest.mark.parametrize("report_every", [0.0, 60.0])
def test_fit_reports_progress(small_loaders, report_every):
    train_dl, valid_dl = small_loaders
    torch.manual_seed(0)
    events = []

    history = fit(2, 0.5, MnistModel(), F.cross_entropy, train_dl, valid_dl,
                  callback=events.append, report_every=report_every)

    kinds = {event.kind for event in events}
    assert kinds == {"batch", "epoch"}
    epoch_events = [event for event in events if event.kind == "epoch"]
    assert [event.epoch for event in epoch_events] == [1, 2]
    assert all(event.batch == 50 and event.batches_per_epoch == 50 for event in epoch_events)
    assert all(event.epochs_total == 2 for event in events)
    batch_losses = [loss for event in events if event.kind == "batch" for loss in event.new_batch_losses]
    assert batch_losses == history.batch_loss
    assert len(batch_losses) == 100
    for epoch in (1, 2):
        batches_seen = [event.batch for event in events if event.kind == "batch" and event.epoch == epoch]
        assert batches_seen == sorted(batches_seen)
        assert batches_seen[-1] == 50
    if report_every == 0.0:
        assert sum(event.kind == "batch" for event in events) >= 100


def test_fit_should_stop_keeps_progress(small_loaders):
    train_dl, valid_dl = small_loaders
    torch.manual_seed(0)
    model = MnistModel()
    calls = 0

    def should_stop() -> bool:
        # fit calls this after every batch, so it turns true after the 10th batch.
        nonlocal calls
        calls += 1
        return calls >= 10

    history = fit(3, 0.5, model, F.cross_entropy, train_dl, valid_dl, should_stop=should_stop)

    assert history.stopped_early is True
    assert len(history.epochs) == 2
    assert history.last["partial"] is True
    assert history.last["batches"] == 10
    assert len(history.batch_loss) == 10
    assert history.last["val_acc"] > history.epochs[0]["val_acc"] + 0.3
    accuracy_now = evaluate(model, F.cross_entropy, valid_dl, accuracy)[2]
    assert accuracy_now == pytest.approx(history.last["val_acc"])


def test_fit_continues_history(small_loaders):
    train_dl, valid_dl = small_loaders
    torch.manual_seed(0)
    model = MnistModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    first = fit(1, 0.5, model, F.cross_entropy, train_dl, valid_dl, opt=opt)
    events = []

    second = fit(2, 0.1, model, F.cross_entropy, train_dl, valid_dl, opt=opt, history=first,
                 callback=events.append)

    assert second is first
    assert [e["epoch"] for e in second.epochs] == [0, 1, 2, 3]
    assert [e["lr"] for e in second.epochs] == [None, 0.5, 0.1, 0.1]
    assert len(second.batch_loss) == 150
    assert {event.epochs_total for event in events} == {3}
    assert [event.epoch for event in events if event.kind == "epoch"] == [2, 3]
    assert opt.param_groups[0]["lr"] == 0.1
    assert second.last["val_acc"] > second.epochs[1]["val_acc"]


def test_fit_after_stop_clears_stopped_early(small_loaders):
    train_dl, valid_dl = small_loaders
    torch.manual_seed(0)
    model = MnistModel()
    history = fit(2, 0.5, model, F.cross_entropy, train_dl, valid_dl, should_stop=lambda: True)
    assert history.stopped_early is True

    history = fit(1, 0.5, model, F.cross_entropy, train_dl, valid_dl, history=history)

    assert history.stopped_early is False
    assert history.last["partial"] is False


def test_train_phases_after_stop_runs_every_phase(mnist):
    config = TrainConfig(subset=2000, phases=(Phase(1, 0.5),), seed=5)
    state = prepare_run(config, mnist, CPU)
    train_phases(state, config.phases, should_stop=lambda: True)
    assert state.history.stopped_early is True

    train_phases(state, (Phase(1, 0.5), Phase(1, 0.1)))

    assert [e["lr"] for e in state.history.epochs] == [None, 0.5, 0.5, 0.1]
    assert state.history.stopped_early is False


def test_fit_diverges_at_huge_lr(small_loaders):
    train_dl, valid_dl = small_loaders
    torch.manual_seed(0)
    model = MnistModel((256, 256))
    initial = _weights(model)

    with pytest.raises(TrainingDiverged) as excinfo:
        fit(1, 1e6, model, F.cross_entropy, train_dl, valid_dl)

    exc = excinfo.value
    assert exc.epoch == 1
    assert 1 <= exc.batch <= len(train_dl)
    assert exc.lr == 1e6
    assert [e["epoch"] for e in exc.history.epochs] == [0]
    assert all(math.isfinite(loss) for loss in exc.history.batch_loss)
    assert f"at epoch 1, batch {exc.batch}" in str(exc)
    assert "learning rate 1e+06 is too high" in str(exc)
    _assert_same_weights(model, initial)


class _InfAtBatch:
    """Cross-entropy that returns infinity on the n-th training batch (1-based)."""

    def __init__(self, n: int):
        self.n = n
        self.training_calls = 0

    def __call__(self, outputs, labels):
        loss = F.cross_entropy(outputs, labels)
        if torch.is_grad_enabled():
            self.training_calls += 1
            if self.training_calls == self.n:
                return loss * float("inf")
        return loss


@pytest.mark.parametrize("report_every", [0.0, 60.0])
def test_fit_injected_inf_restores_epoch(small_loaders, report_every):
    train_dl, valid_dl = small_loaders
    torch.manual_seed(0)
    model = MnistModel()
    history = fit(1, 0.5, model, F.cross_entropy, train_dl, valid_dl)
    after_epoch_1 = _weights(model)
    loss_fn = _InfAtBatch(n=7)

    with pytest.raises(TrainingDiverged) as excinfo:
        fit(2, 0.5, model, loss_fn, train_dl, valid_dl, history=history, report_every=report_every)

    exc = excinfo.value
    assert (exc.epoch, exc.batch) == (2, 7)
    assert exc.history is history
    assert [e["epoch"] for e in history.epochs] == [0, 1]
    assert all(math.isfinite(loss) for loss in history.batch_loss)
    _assert_same_weights(model, after_epoch_1)


def test_fit_reproducible_for_seed(mnist):
    def run(seed: int):
        config = TrainConfig(subset=3000, phases=(Phase(2, 0.5),), seed=seed)
        state = prepare_run(config, mnist, CPU)
        history = train_phases(state, config.phases)
        return history, _weights(state.model)

    first, first_weights = run(7)
    second, second_weights = run(7)
    other, _ = run(8)

    assert _learning_columns(first) == _learning_columns(second)
    assert first.batch_loss == second.batch_loss
    for key, tensor in first_weights.items():
        assert torch.equal(second_weights[key], tensor), key
    assert other.batch_loss != first.batch_loss


def test_prepare_run_subset_and_test_accuracy(mnist):
    config = TrainConfig(subset=4000, phases=(Phase(2, 0.5),), seed=1)
    state = prepare_run(config, mnist, CPU)

    assert len(state.train_dl.labels) == 4000
    assert len(state.valid_dl.labels) == 1000
    assert len(state.train_dl) == 40
    train_phases(state, config.phases)
    loss, acc = measure_test_accuracy(state.model, mnist, CPU)
    assert acc > 0.8
    assert loss < 0.7


# --- TrainConfig -------------------------------------------------------------

@pytest.mark.parametrize("changes, expected", [
    ({"dataset": "emnist"}, "dataset 'emnist' is invalid: choose one of ['fashion-mnist', 'mnist']"),
    ({"hidden": (0,)}, "hidden layer size 0 is invalid: choose a whole number between 1 and 2048"),
    ({"hidden": (4096,)}, "hidden layer size 4096 is invalid"),
    ({"hidden": (8,) * 7}, "7 hidden layers is too many: choose at most 6"),
    ({"activation": "gelu"}, "activation 'gelu' is invalid"),
    ({"optimizer": "rmsprop"}, "optimizer 'rmsprop' is invalid: choose one of ['sgd', 'adam']"),
    ({"batch_size": 0}, "batch size 0 is invalid: choose a whole number between 1 and 10000"),
    ({"batch_size": 10_001}, "batch size 10001 is invalid: choose a whole number between 1 and 10000"),
    ({"batch_size": 64.0}, "batch size 64.0 is invalid: choose a whole number between 1 and 10000"),
    ({"batch_size": True}, "batch size True is invalid"),
    ({"phases": ()}, "a run needs at least one phase"),
    ({"phases": (Phase(5, 0),)}, "learning rate 0 is invalid: choose a value between 0.0001 and 2"),
    ({"phases": (Phase(5, 2.5),)}, "learning rate 2.5 is invalid: choose a value between 0.0001 and 2"),
    ({"phases": (Phase(5, float("nan")),)}, "learning rate nan is invalid"),
    ({"phases": (Phase(5, float("inf")),)}, "learning rate inf is invalid"),
    ({"phases": (Phase(5, "0.1"),)}, "learning rate '0.1' is invalid"),
    ({"phases": (Phase(5, 0.5), Phase(2, 1e-5))}, "learning rate 1e-05 is invalid"),
    ({"phases": (Phase(0, 0.5),)}, "epochs 0 is invalid: choose a whole number between 1 and 100"),
    ({"phases": (Phase(101, 0.5),)}, "epochs 101 is invalid: choose a whole number between 1 and 100"),
    ({"val_pct": 0.01}, "validation fraction 0.01 is invalid: choose a value between 0.05 and 0.5"),
    ({"val_pct": 0.6}, "validation fraction 0.6 is invalid: choose a value between 0.05 and 0.5"),
    ({"seed": -1}, "seed -1 is invalid: choose a whole number between 0 and 4294967295"),
    ({"seed": 2**32}, "seed 4294967296 is invalid"),
    ({"seed": 1.0}, "seed 1.0 is invalid"),
    ({"device": "tpu"}, "device 'tpu' is invalid: choose one of ['auto', 'cpu', 'cuda']"),
    ({"subset": 99}, "subset size 99 is invalid: choose a whole number between 100 and 60000"),
    ({"subset": 60_001}, "subset size 60001 is invalid"),
])
def test_config_validate_rejects(changes, expected):
    config = replace(TrainConfig(), **changes)
    with pytest.raises(ValueError) as excinfo:
        config.validate()
    assert expected in str(excinfo.value)


@pytest.mark.parametrize("changes", [
    {},
    {"hidden": (), "activation": "sigmoid"},
    {"hidden": (1,), "batch_size": 1, "phases": (Phase(1, 1e-4),), "val_pct": 0.05, "seed": 0},
    {"hidden": (2048,) * 6, "batch_size": 10_000, "phases": (Phase(100, 2),), "val_pct": 0.5,
     "seed": 2**32 - 1, "subset": 60_000},
])
def test_config_validate_accepts_bounds(changes):
    config = replace(TrainConfig(), **changes)
    assert config.validate() is config


def _parse_command_line(command: str) -> TrainConfig:
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "core.train"]
    parser = build_parser()
    return config_from_args(parser.parse_args(words[3:]), parser)


@pytest.mark.parametrize("changes", [
    {},
    {"hidden": ()},
    {"hidden": (128, 64, 10), "activation": "leaky_relu", "optimizer": "adam"},
    {"dataset": "fashion-mnist", "batch_size": 32, "val_pct": 0.25, "seed": 0, "device": "cpu"},
    {"phases": (Phase(3, 0.5), Phase(2, 0.1), Phase(1, 0.01))},
    {"phases": (Phase(4, 0.000316227766016838),), "val_pct": 0.123456789},
    {"augment": True, "subset": 2000},
])
def test_command_line_round_trips(changes):
    config = replace(TrainConfig(), **changes).validate()

    parsed = _parse_command_line(config.command_line())

    assert parsed == config
    assert parsed.command_line() == config.command_line()


def test_prepare_run_threads_same_weights(mnist):
    """Runs that start at once in several threads, as the app's training jobs do, get the seed's weights."""
    import threading

    config = TrainConfig(hidden=(32,), phases=(Phase(1, 0.5),), seed=7, subset=1000)
    expected = _weights(prepare_run(config, mnist, CPU).model)
    threads_per_round, rounds = 4, 10
    barrier = threading.Barrier(threads_per_round)
    models = []

    def start_run() -> None:
        barrier.wait()
        models.append(prepare_run(config, mnist, CPU).model)

    for _ in range(rounds):
        workers = [threading.Thread(target=start_run) for _ in range(threads_per_round)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert len(models) == threads_per_round * rounds
    for model in models:
        _assert_same_weights(model, expected)


@pytest.mark.parametrize(("optimizer", "lr", "expected"), [
    ("adam", 2.0, "learning rate 2 is too high for this model; lower it (for example to 0.2)"),
    ("sgd", 1e-4, "learning rate 0.0001 is too low or the run too short"),
])
def test_learning_problem_names_the_cause(mnist, optimizer, lr, expected):
    config = TrainConfig(hidden=(32,), optimizer=optimizer, phases=(Phase(2, lr),), seed=42, subset=5000)
    state = prepare_run(config, mnist, CPU)
    problem = learning_problem(train_phases(state, config.phases))
    assert problem is not None
    assert "is no better than the" in problem
    assert expected in problem


def test_learning_problem_none_when_learning(mnist):
    config = TrainConfig(hidden=(32,), phases=(Phase(1, 0.5),), seed=42, subset=5000)
    state = prepare_run(config, mnist, CPU)
    assert learning_problem(train_phases(state, config.phases)) is None
