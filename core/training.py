"""The tutorial's training loop: accuracy, loss_batch, evaluate and fit.

The hot path copies no value to the host per batch. Losses stay on the device
and are read in one go at most every `report_every` seconds. Then the callback
gets them and the loss is checked for NaN or infinity.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from core.config import TrainConfig
from core.device import DeviceDataLoader, choose_threads, cpu_threads, resolve_device
from core.model import MnistModel

EVAL_BATCH_SIZE = 10_000
_GLOBAL_RNG_LOCK = threading.Lock()


def accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose largest logit is the label, as a 0-dim tensor."""
    preds = outputs.argmax(dim=1)
    return (preds == labels).float().mean()


def loss_batch(model, loss_func, xb, yb, opt=None, metric=None):
    """Compute the loss of one batch and, given an optimizer, take one step.

    Returns (loss, batch size, metric) with loss and metric as detached tensors."""
    preds = model(xb)
    loss = loss_func(preds, yb)
    if opt is not None:
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    metric_result = metric(preds.detach(), yb) if metric is not None else None
    return loss.detach(), len(xb), metric_result


def evaluate(model, loss_fn, valid_dl, metric=None) -> tuple[float, int, float | None]:
    """Return (mean loss, number of samples, mean metric) over a loader, without gradients."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        results = [loss_batch(model, loss_fn, xb, yb, metric=metric) for xb, yb in valid_dl]
    model.train(was_training)
    losses, nums, metrics = zip(*results)
    total = sum(nums)
    avg_loss = sum(loss * n for loss, n in zip(losses, nums)) / total
    avg_metric = None
    if metric is not None:
        avg_metric = float(sum(m * n for m, n in zip(metrics, nums)) / total)
    return float(avg_loss), total, avg_metric


@dataclass
class History:
    """Per-epoch record of a run's losses and accuracy; epoch 0 is the untrained model."""
    epochs: list[dict] = field(default_factory=list)
    batch_loss: list[float] = field(default_factory=list)
    batches_per_epoch: int = 0
    stopped_early: bool = False

    def to_dict(self) -> dict:
        return {"epochs": [dict(e) for e in self.epochs], "batch_loss": list(self.batch_loss),
                "batches_per_epoch": self.batches_per_epoch, "stopped_early": self.stopped_early}

    @classmethod
    def from_dict(cls, data: dict) -> "History":
        return cls([dict(e) for e in data.get("epochs", [])], [float(x) for x in data.get("batch_loss", [])],
                   int(data.get("batches_per_epoch", 0)), bool(data.get("stopped_early", False)))

    @property
    def last(self) -> dict:
        return self.epochs[-1]


# A finished run "did not learn" when its validation accuracy ends at most this far above epoch 0's.
NO_LEARNING_MARGIN = 0.01
# Such a run's learning rate was too high when some batch's loss rose above this many times the first batch's.
LOSS_RISE_FACTOR = 2.0


def learning_problem(history: History) -> str | None:
    """Explain why a run's validation accuracy did not rise above epoch 0's, or return None if it did.

    A training loss that rose well above its first value means a learning rate that is too high,
    even when the loss never became NaN or infinite. Otherwise the run moved too little."""
    if len(history.epochs) < 2 or not history.batch_loss:
        return None
    first, last = history.epochs[0]["val_acc"], history.last["val_acc"]
    if last > first + NO_LEARNING_MARGIN:
        return None
    lr = history.last["lr"]
    start, peak = history.batch_loss[0], max(history.batch_loss)
    summary = f"validation accuracy {last:.1%} is no better than the {first:.1%} before training"
    if peak > LOSS_RISE_FACTOR * start:
        peak_text = f"{peak:,.0f}" if peak >= 1000 else f"{peak:.3g}"
        return (f"{summary}, and the training loss rose from {start:.3g} to {peak_text}: learning rate {lr:g} "
                f"is too high for this model; lower it (for example to {lr / 10:g}) and train again")
    return (f"{summary}, and the training loss barely moved: learning rate {lr:g} is too low or the run too "
            f"short; raise the learning rate or train for more epochs")


@dataclass
class Progress:
    """Callback payload: kind "batch" at a bounded rate, kind "epoch" after every epoch."""
    kind: str
    epoch: int  # 1-based epoch in progress, counted over the whole history
    batch: int  # batches done in this epoch
    batches_per_epoch: int
    epochs_total: int
    new_batch_losses: list[float]
    history: History
    elapsed_s: float


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite. `history` contains everything up to then."""

    def __init__(self, epoch: int, batch: int, lr: float, history: History):
        self.epoch, self.batch, self.lr, self.history = epoch, batch, lr, history
        super().__init__(
            f"the loss diverged (NaN or infinite) at epoch {epoch}, batch {batch}: learning rate "
            f"{lr:g} is too high for this model; lower it (for example to {lr / 10:g}) and train again")


def fit(epochs, lr, model, loss_fn, train_dl, valid_dl, metric=accuracy, opt_fn=None, *,
        opt=None, history: History | None = None,
        callback: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        report_every: float = 0.25, epochs_total: int | None = None) -> History:
    """Train for `epochs` at learning rate `lr` and return the history, as in the tutorial.

    Pass `history` (and `opt`) from an earlier call to continue a run: epochs
    are appended. `callback` is called with a Progress after batches, at most
    every `report_every` seconds, and after every epoch. When `should_stop()`
    turns true the run ends after the current batch, is evaluated, and keeps
    what it learned. Raises TrainingDiverged, with the weights of the last
    finished epoch restored, when the loss becomes NaN or infinite."""
    history = history if history is not None else History()
    # Reset so that a run continued after a stop is not reported as stopped again.
    history.stopped_early = False
    if opt is None:
        opt = (opt_fn or torch.optim.SGD)(model.parameters(), lr=lr)
    for group in opt.param_groups:
        group["lr"] = lr
    history.batches_per_epoch = len(train_dl)
    device = next(model.parameters()).device
    if epochs_total is None:
        epochs_total = (len(history.epochs) - 1 if history.epochs else 0) + epochs
    stop = should_stop or (lambda: False)

    if not history.epochs:
        val_loss, _, val_acc = evaluate(model, loss_fn, valid_dl, metric)
        history.epochs.append({"epoch": 0, "lr": None, "val_loss": val_loss, "val_acc": val_acc,
                               "train_loss": None, "seconds": 0.0, "images_per_s": None})

    good_state = copy.deepcopy(model.state_dict())
    start = time.perf_counter()
    for _ in range(epochs):
        epoch = len(history.epochs)
        model.train()
        epoch_start = time.perf_counter()
        pending: list[torch.Tensor] = []
        epoch_losses: list[float] = []
        last_report = epoch_start
        batch = images = 0

        def flush(kind: str) -> None:
            nonlocal pending
            values = torch.stack(pending).tolist() if pending else []
            pending = []
            bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
            if bad is not None:
                model.load_state_dict(good_state)
                raise TrainingDiverged(epoch, batch - len(values) + bad + 1, lr, history)
            epoch_losses.extend(values)
            history.batch_loss.extend(values)
            if callback is not None:
                callback(Progress(kind, epoch, batch, len(train_dl), epochs_total, values, history,
                                  time.perf_counter() - start))

        stopped = False
        for xb, yb in train_dl:
            loss, n, _ = loss_batch(model, loss_fn, xb, yb, opt)
            pending.append(loss)
            batch += 1
            images += n
            if stop():
                stopped = True
                break
            now = time.perf_counter()
            if now - last_report >= report_every:
                last_report = now
                flush("batch")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - epoch_start
        flush("batch")

        val_loss, _, val_acc = evaluate(model, loss_fn, valid_dl, metric)
        if not math.isfinite(val_loss):
            model.load_state_dict(good_state)
            raise TrainingDiverged(epoch, batch, lr, history)
        history.epochs.append({
            "epoch": epoch, "lr": lr, "val_loss": val_loss, "val_acc": val_acc,
            "train_loss": sum(epoch_losses) / max(len(epoch_losses), 1),
            "seconds": train_seconds, "images_per_s": images / train_seconds if train_seconds else None,
            "batches": batch, "partial": batch < len(train_dl),
        })
        good_state = copy.deepcopy(model.state_dict())
        if callback is not None:
            callback(Progress("epoch", epoch, batch, len(train_dl), epochs_total, [], history,
                              time.perf_counter() - start))
        if stopped:
            history.stopped_early = True
            break
    return history


# --- A whole run from a config: the path shared by the app and the command line ---

def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr)


@dataclass
class RunState:
    """Everything needed to train a config further: model, optimizer, loaders and history."""
    config: TrainConfig
    model: MnistModel
    opt: torch.optim.Optimizer
    train_dl: DeviceDataLoader
    valid_dl: DeviceDataLoader
    history: History
    device: torch.device
    # CPU threads while training; None lets choose_threads pick by model size.
    threads: int | None = None


def prepare_run(config: TrainConfig, splits, device: torch.device | None = None) -> RunState:
    """Build the model, optimizer and loaders for a config on the real data (`core.data.Splits`)."""
    from core.augment import augment_batch
    from core.data import split_indices

    config.validate()
    device = device or resolve_device(config.device)
    train_idx, val_idx = split_indices(len(splits.train_labels), config.val_pct, config.seed)
    if config.subset is not None:
        if config.subset > len(train_idx):
            raise ValueError(f"subset size {config.subset} is larger than the {len(train_idx)} training images "
                             f"left at validation fraction {config.val_pct:g}: choose at most {len(train_idx)}")
        train_idx = train_idx[:config.subset]
        val_idx = val_idx[:max(config.subset // 4, 100)]
    train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)

    # nn.Linear draws its initial weights from torch's global generator, which every thread shares.
    # The lock keeps two runs that start at once from drawing from each other's seeded sequence.
    with _GLOBAL_RNG_LOCK:
        torch.manual_seed(config.seed)
        model = MnistModel(config.hidden, config.activation)
    model = model.to(device)
    opt = make_optimizer(config.optimizer, model.parameters(), config.phases[0].lr)
    train_dl = DeviceDataLoader(splits.train_images[train_idx], splits.train_labels[train_idx],
                                config.batch_size, device, shuffle=True, seed=config.seed,
                                transform=augment_batch if config.augment else None)
    valid_dl = DeviceDataLoader(splits.train_images[val_idx], splits.train_labels[val_idx],
                                EVAL_BATCH_SIZE, device, shuffle=False)
    return RunState(config, model, opt, train_dl, valid_dl, History(), device)


def train_phases(state: RunState, phases, callback=None, should_stop=None) -> History:
    """Run each (epochs, lr) phase in turn on a prepared run, appending to its history."""
    done = len(state.history.epochs) - 1 if state.history.epochs else 0
    epochs_total = done + sum(phase.epochs for phase in phases)
    threads = state.threads or choose_threads(sum(p.numel() for p in state.model.parameters()))
    with cpu_threads(threads):
        for phase in phases:
            fit(phase.epochs, phase.lr, state.model, F.cross_entropy, state.train_dl, state.valid_dl,
                accuracy, opt=state.opt, history=state.history, callback=callback,
                should_stop=should_stop, epochs_total=epochs_total)
            if state.history.stopped_early:
                break
    return state.history


def test_accuracy(model, splits, device: torch.device) -> tuple[float, float]:
    """Return (loss, accuracy) on the test split."""
    test_dl = DeviceDataLoader(splits.test_images, splits.test_labels, EVAL_BATCH_SIZE, device, shuffle=False)
    loss, _, acc = evaluate(model, F.cross_entropy, test_dl, accuracy)
    return loss, acc
