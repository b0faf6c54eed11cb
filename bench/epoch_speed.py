"""Seconds per training epoch: the tutorial's pipeline against MNIST Studio's, with floors.

Run from the repository root:

    .venv/bin/python bench/epoch_speed.py [--json] [--busy-core]

Both pipelines train the tutorial's model (784-32-10, ReLU) with plain SGD on
the same 48,000 / 12,000 split of the real MNIST (the IDX files in the data
cache). They start from the same initial weights, see the batches in the same
order and run in one process with the same number of CPU threads. Their epochs
are interleaved so that load from other processes hits both alike. Each figure
is the median of `--epochs` epochs after one warm-up epoch, in wall-clock
seconds and in CPU seconds of this process.

The tutorial pipeline is torchvision's MNIST dataset with ToTensor, a
DataLoader with a SubsetRandomSampler, and a DeviceDataLoader that moves every
batch to the device, with `.item()` on every batch's loss. The studio path is
`core.training.prepare_run` and `fit`: the split lives on the device and each
batch is one `index_select`.

Floors, per epoch:
- compute: 6 x parameters x samples (the usual estimate of a training step's
  FLOPs) divided by the matmul rate this script measures at the model's own
  shapes, and again divided by the rate of one large matmul (the peak).
- eager overhead: the same number of `loss_batch` steps on one fixed batch
  that is already on the device, so no loading or indexing at all.
For validation, the tutorial's evaluate over its loader is set against the
studio's evaluate and against one forward pass over all 12,000 images.

`--json` makes the last line of the output one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, SubsetRandomSampler
from torchvision import datasets, transforms

# Running `python bench/epoch_speed.py` puts bench/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import data  # noqa: E402
from core import training as studio  # noqa: E402
from core.config import Phase, TrainConfig  # noqa: E402
from core.device import DeviceDataLoader as StudioDeviceDataLoader  # noqa: E402
from core.device import choose_threads, get_default_device  # noqa: E402
from core.model import MnistModel as StudioModel  # noqa: E402

INPUT_SIZE = 28 * 28
NUM_CLASSES = 10


# --- The tutorial's pipeline -------------------------------------------------
# Written after the code of "Training Deep Neural Networks on a GPU with
# PyTorch" (jovian.ai), function for function. Two additions do not change its
# speed: the training sampler gets a seeded generator, and the split comes from
# the seeded `core.data.split_indices` (the tutorial calls np.random.permutation
# unseeded). With them both pipelines see the same split and batch order.

class MnistModel(nn.Module):
    """Feedforward network with one hidden layer."""

    def __init__(self, in_size, hidden_size, out_size):
        super().__init__()
        self.linear1 = nn.Linear(in_size, hidden_size)
        self.linear2 = nn.Linear(hidden_size, out_size)

    def forward(self, xb):
        xb = xb.view(xb.size(0), -1)
        out = self.linear1(xb)
        out = F.relu(out)
        out = self.linear2(out)
        return out


def to_device(data, device):
    """Move a tensor, or a list or tuple of tensors, to the device."""
    if isinstance(data, (list, tuple)):
        return [to_device(x, device) for x in data]
    return data.to(device, non_blocking=True)


class DeviceDataLoader:
    """Wrap a DataLoader and move each batch to the device as it is yielded."""

    def __init__(self, dl, device):
        self.dl = dl
        self.device = device

    def __iter__(self):
        for b in self.dl:
            yield to_device(b, self.device)

    def __len__(self):
        return len(self.dl)


def loss_batch(model, loss_func, xb, yb, opt=None, metric=None):
    preds = model(xb)
    loss = loss_func(preds, yb)
    if opt is not None:
        loss.backward()
        opt.step()
        opt.zero_grad()
    metric_result = None
    if metric is not None:
        metric_result = metric(preds, yb)
    return loss.item(), len(xb), metric_result


def evaluate(model, loss_fn, valid_dl, metric=None):
    with torch.no_grad():
        results = [loss_batch(model, loss_fn, xb, yb, metric=metric) for xb, yb in valid_dl]
        losses, nums, metrics = zip(*results)
        total = np.sum(nums)
        avg_loss = np.sum(np.multiply(losses, nums)) / total
        avg_metric = None
        if metric is not None:
            avg_metric = np.sum(np.multiply(metrics, nums)) / total
    return avg_loss, total, avg_metric


def accuracy(outputs, labels):
    _, preds = torch.max(outputs, dim=1)
    return torch.sum(preds == labels).item() / len(preds)


def train_epoch(model, loss_fn, train_dl, opt, step=loss_batch):
    """Run one pass of the loop inside the tutorial's `fit`, with `step` in place of its loss_batch."""
    for xb, yb in train_dl:
        step(model, loss_fn, xb, yb, opt)


def tutorial_loaders(root, train_indices, val_indices, batch_size, device, seed):
    """Return the tutorial's (train_dl, valid_dl) over torchvision's MNIST in `root`."""
    dataset = datasets.MNIST(str(root), train=True, transform=transforms.ToTensor(), download=False)
    train_sampler = SubsetRandomSampler(train_indices, generator=torch.Generator().manual_seed(seed))
    train_dl = DeviceDataLoader(DataLoader(dataset, batch_size, sampler=train_sampler), device)
    valid_sampler = SubsetRandomSampler(val_indices)
    valid_dl = DeviceDataLoader(DataLoader(dataset, batch_size, sampler=valid_sampler), device)
    return train_dl, valid_dl


# --- Timing ------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Return the wall-clock seconds `fn()` takes, with the device's queued work finished before and after."""
    return clocked(fn, device)[0]


def clocked(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """Return (wall-clock seconds, CPU seconds of this process) that `fn()` takes.

    With one intra-op thread the CPU seconds barely change when other processes
    share the cores, because time spent waiting for a core is not counted. On
    CUDA they include the time synchronize spends waiting for the GPU."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


class ClockedLoader:
    """Wrap a loader and record both clocks from the first batch to the loop's request after the last.

    That covers what fit's own "seconds" cover: every step and fit's per-batch bookkeeping."""

    def __init__(self, loader, device: torch.device):
        self.loader = loader
        self.device = device
        self.clocks: list[tuple[float, float]] = []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        synchronize(self.device)
        wall, cpu = time.perf_counter(), time.process_time()
        yield from self.loader
        synchronize(self.device)
        self.clocks.append((time.perf_counter() - wall, time.process_time() - cpu))


def median_after_warmup(times: list[float]) -> float:
    return statistics.median(times[1:])


def medians_after_warmup(clocks: list[tuple[float, float]]) -> tuple[float, float]:
    """Return the medians of (wall, CPU) seconds, leaving out the first (warm-up) measurement."""
    return median_after_warmup([c[0] for c in clocks]), median_after_warmup([c[1] for c in clocks])


def load_average() -> float | None:
    """Return the 1-minute load average, or None where the OS has none."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def format_load(load: float | None) -> str:
    return "unknown" if load is None else f"{load:.2f}"


# --- Floors ------------------------------------------------------------------

def matmul_shapes(sizes: list[int], batch: int, backward: bool) -> list[tuple[int, int, int]]:
    """Return the (m, k, n) of every matmul in one step of an MLP with these layer sizes.

    Forward: (batch, in) @ (in, out) per layer. Backward adds the weight
    gradient (out, batch) @ (batch, in) of every layer and the input gradient
    (batch, out) @ (out, in) of every layer but the first, whose input
    needs no gradient."""
    shapes = []
    for layer, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        shapes.append((batch, fan_in, fan_out))
        if backward:
            shapes.append((fan_out, batch, fan_in))
            if layer > 0:
                shapes.append((batch, fan_out, fan_in))
    return shapes


def matmul_rate(shapes: list[tuple[int, int, int]], device: torch.device, repeats: int,
                rounds: int = 5) -> float:
    """Return the FLOP/s of running these matmuls `repeats` times, the median of `rounds` rounds."""
    operands = [(torch.rand(m, k, device=device), torch.rand(k, n, device=device)) for m, k, n in shapes]
    flops = sum(2 * m * k * n for m, k, n in shapes) * repeats

    def run() -> None:
        for _ in range(repeats):
            for a, b in operands:
                torch.mm(a, b)

    run()  # warm-up: library initialisation and, on CUDA, kernel selection
    seconds = statistics.median(timed(run, device) for _ in range(rounds))
    return flops / seconds


def peak_matmul_rate(device: torch.device) -> tuple[float, int]:
    """Return (FLOP/s, n) of an (n, n) @ (n, n) float32 matmul large enough to reach the device's peak."""
    n = 8192 if device.type == "cuda" else 2048
    return matmul_rate([(n, n, n)], device, repeats=1, rounds=3), n


# --- The studio path and its parts -------------------------------------------

def fixed_batch_steps(model: nn.Module, opt: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor,
                      steps: int, part: str) -> None:
    """Run `steps` steps of one fixed batch, up to `part`: "forward", "backward" or "step"."""
    for _ in range(steps):
        if part == "step":
            studio.loss_batch(model, F.cross_entropy, xb, yb, opt)
            continue
        loss = F.cross_entropy(model(xb), yb)
        if part == "backward":
            loss.backward()
            model.zero_grad(set_to_none=True)


def storage_epoch(model, opt, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                  generator: torch.Generator) -> None:
    """Train one epoch from a split stored as uint8 or float32 rows, in the studio loader's order and steps."""
    n = len(labels)
    order = torch.randperm(n, generator=generator).to(images.device)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        xb = images.index_select(0, idx)
        if xb.dtype == torch.uint8:
            xb = xb.float().div_(255)
        yb = labels.index_select(0, idx)
        studio.loss_batch(model, F.cross_entropy, xb, yb, opt)


def train_both(device: torch.device, args, dataset_root: Path, splits: data.Splits, train_np: np.ndarray,
               val_np: np.ndarray):
    """Train and validate both pipelines for 1 + args.epochs alternating epochs.

    Returns (clocks, val_acc, same_init, state): (wall, CPU) seconds of every
    epoch and validation pass, validation accuracy after every epoch, whether
    both models started from the same weights, and the studio's RunState."""
    seed, batch_size, lr = args.seed, args.batch_size, args.lr

    # The tutorial's model and the studio's get the same initial weights: both
    # build Linear(784, hidden) then Linear(hidden, 10) right after manual_seed(seed).
    torch.manual_seed(seed)
    tutorial_model = to_device(MnistModel(INPUT_SIZE, args.hidden, NUM_CLASSES), device)
    tutorial_opt = torch.optim.SGD(tutorial_model.parameters(), lr=lr)
    tutorial_train_dl, tutorial_valid_dl = tutorial_loaders(dataset_root, train_np, val_np, batch_size,
                                                            device, seed)

    config = TrainConfig(hidden=(args.hidden,), batch_size=batch_size, phases=(Phase(1, lr),), seed=seed,
                         device=device.type)
    state = studio.prepare_run(config, splits, device)
    same_init = all(torch.equal(a.detach(), b.detach()) for a, b in
                    zip(tutorial_model.parameters(), state.model.parameters()))

    clocks = {"tutorial_train": [], "tutorial_val": [], "studio_val": []}
    studio_train_dl = ClockedLoader(state.train_dl, device)
    val_acc = {"tutorial": [], "studio": []}
    for _ in range(1 + args.epochs):
        clocks["tutorial_train"].append(clocked(
            lambda: train_epoch(tutorial_model, F.cross_entropy, tutorial_train_dl, tutorial_opt), device))
        studio.fit(1, lr, state.model, F.cross_entropy, studio_train_dl, state.valid_dl, studio.accuracy,
                   opt=state.opt, history=state.history)

        result = {}
        clocks["tutorial_val"].append(clocked(
            lambda: result.update(t=evaluate(tutorial_model, F.cross_entropy, tutorial_valid_dl, accuracy)),
            device))
        clocks["studio_val"].append(clocked(
            lambda: result.update(s=studio.evaluate(state.model, F.cross_entropy, state.valid_dl,
                                                    studio.accuracy)), device))
        val_acc["tutorial"].append(float(result["t"][2]))
        val_acc["studio"].append(float(result["s"][2]))
    clocks["studio_train"] = studio_train_dl.clocks
    return clocks, val_acc, same_init, state


def time_loop_parts(device: torch.device, args, splits: data.Splits, train_idx: torch.Tensor,
                    model: nn.Module) -> dict[str, list[tuple[float, float]]]:
    """Time the parts of a studio epoch as variants in the same rounds; return their (wall, CPU) clocks.

    The variants are the loop inside fit (the studio loader and loss_batch),
    the loader alone, then forward, forward + backward and whole steps on one
    fixed batch. Each starts from a copy of `model`."""
    loader = StudioDeviceDataLoader(splits.train_images[train_idx], splits.train_labels[train_idx],
                                    args.batch_size, device, seed=args.seed + 1)
    steps = len(loader)
    xb, yb = (t.clone() for t in next(iter(loader)))
    loop_model = copy.deepcopy(model)
    loop_opt = studio.make_optimizer("sgd", loop_model.parameters(), args.lr)
    fixed_model = copy.deepcopy(model)
    fixed_opt = studio.make_optimizer("sgd", fixed_model.parameters(), args.lr)

    parts = {"loop": [], "loader": [], "forward": [], "backward": [], "step": []}
    for _ in range(1 + args.epochs):
        parts["loop"].append(clocked(lambda: train_epoch(loop_model, F.cross_entropy, loader, loop_opt,
                                                         studio.loss_batch), device))
        parts["loader"].append(clocked(lambda: [None for _ in loader], device))
        for part in ("forward", "backward", "step"):
            parts[part].append(clocked(
                lambda: fixed_batch_steps(fixed_model, fixed_opt, xb, yb, steps, part), device))
    return parts


def time_one_batch_validation(device: torch.device, args, splits: data.Splits, val_idx: torch.Tensor,
                              model: nn.Module) -> float:
    """Return the median seconds of loss and accuracy over all validation images as one float32 batch."""
    val_images = splits.train_images[val_idx].reshape(len(val_idx), -1).to(device).float().div_(255)
    val_labels = splits.train_labels[val_idx].to(device)

    def run() -> float:
        with torch.no_grad():
            outputs = model(val_images)
            return float(F.cross_entropy(outputs, val_labels) + studio.accuracy(outputs, val_labels))

    return median_after_warmup([timed(run, device) for _ in range(1 + args.epochs)])


def measure_device(device: torch.device, args, dataset_root: Path, splits: data.Splits) -> dict:
    """Train both pipelines on one device and return every timing, in seconds per epoch or pass."""
    train_np, val_np = data.split_indices(len(splits.train_labels), 0.2, args.seed)
    train_idx, val_idx = torch.from_numpy(train_np), torch.from_numpy(val_np)
    clocks, val_acc, same_init, state = train_both(device, args, dataset_root, splits, train_np, val_np)

    parts = time_loop_parts(device, args, splits, train_idx, state.model)
    wall_parts = {name: medians_after_warmup(values)[0] for name, values in parts.items()}
    cpu_parts = {name: medians_after_warmup(values)[1] for name, values in parts.items()}
    one_batch_val_s = time_one_batch_validation(device, args, splits, val_idx, state.model)

    n_train, n_val = len(train_idx), len(val_idx)
    parameters = sum(p.numel() for p in state.model.parameters())
    sizes = [INPUT_SIZE, args.hidden, NUM_CLASSES]
    model_rate = matmul_rate(matmul_shapes(sizes, args.batch_size, backward=True), device,
                             repeats=2000 if device.type == "cuda" else 200)
    val_rate = matmul_rate(matmul_shapes(sizes, n_val, backward=False), device, repeats=3)
    peak_rate, peak_n = peak_matmul_rate(device)

    tutorial_s, tutorial_cpu_s = medians_after_warmup(clocks["tutorial_train"])
    studio_s, studio_cpu_s = medians_after_warmup(clocks["studio_train"])
    # One epoch of the tutorial's fit: the training pass, then evaluate on the validation split.
    tutorial_fit_s = median_after_warmup([train[0] + val[0] for train, val in
                                          zip(clocks["tutorial_train"], clocks["tutorial_val"])])
    studio_fit_s = median_after_warmup([train[0] + val[0] for train, val in
                                        zip(clocks["studio_train"], clocks["studio_val"])])
    train_flops = 6 * parameters * n_train
    return {
        "device": device.type,
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else f"{os.cpu_count()} logical CPUs, {platform.machine()}"),
        "tutorial_s_per_epoch": tutorial_s,
        "studio_s_per_epoch": studio_s,
        "speedup": tutorial_s / studio_s,
        "tutorial_cpu_s_per_epoch": tutorial_cpu_s,
        "studio_cpu_s_per_epoch": studio_cpu_s,
        "cpu_time_speedup": tutorial_cpu_s / studio_cpu_s,
        "tutorial_fit_epoch_s": tutorial_fit_s,
        "studio_fit_epoch_s": studio_fit_s,
        "fit_epoch_speedup": tutorial_fit_s / studio_fit_s,
        "floor_s_per_epoch": train_flops / model_rate,
        "peak_floor_s_per_epoch": train_flops / peak_rate,
        "eager_floor_s_per_epoch": wall_parts["step"],
        "eager_floor_cpu_s_per_epoch": cpu_parts["step"],
        "tutorial_val_s": medians_after_warmup(clocks["tutorial_val"])[0],
        "studio_val_s": medians_after_warmup(clocks["studio_val"])[0],
        "one_batch_val_s": one_batch_val_s,
        "val_floor_s": 2 * parameters * n_val / val_rate,
        "matmul_gflops_model_shapes": model_rate / 1e9,
        "matmul_gflops_validation_shapes": val_rate / 1e9,
        "matmul_gflops_peak": peak_rate / 1e9,
        "peak_matmul_n": peak_n,
        "breakdown_s": breakdown(wall_parts),
        "breakdown_cpu_s": breakdown(cpu_parts),
        "clocks_s": clocks,
        "val_acc": val_acc,
        "same_initial_weights": same_init,
        "steps_per_epoch": len(state.train_dl),
        "parameters": parameters,
        "train_samples": n_train,
        "val_samples": n_val,
    }


def breakdown(parts: dict[str, float]) -> dict[str, float]:
    """Split the loop's seconds into loader, forward, backward, optimizer step and the rest."""
    return {
        "loop": parts["loop"],
        "loader": parts["loader"],
        "forward": parts["forward"],
        "backward": parts["backward"] - parts["forward"],
        "optimizer_step": parts["step"] - parts["backward"],
        "remainder": parts["loop"] - parts["loader"] - parts["step"],
    }


# --- Choices: storage dtype, CPU threads, SGD options ----------------------

def compare_storage(device: torch.device, args, splits: data.Splits) -> dict:
    """Seconds per training epoch with the split stored as uint8 or as float32, interleaved."""
    train_np, _ = data.split_indices(len(splits.train_labels), 0.2, args.seed)
    train_idx = torch.from_numpy(train_np)
    labels = splits.train_labels[train_idx].to(device)
    stored = {"uint8": splits.train_images[train_idx].reshape(len(train_idx), -1).to(device)}
    stored["float32"] = stored["uint8"].div(255)
    clocks = {name: [] for name in stored}
    torch.manual_seed(args.seed)
    model = StudioModel((args.hidden,)).to(device)
    opt = studio.make_optimizer("sgd", model.parameters(), args.lr)
    for _ in range(1 + args.choice_epochs):
        for name, images in stored.items():
            generator = torch.Generator().manual_seed(args.seed)
            clocks[name].append(clocked(
                lambda: storage_epoch(model, opt, images, labels, args.batch_size, generator), device))
    results = {}
    for name, values in clocks.items():
        wall, cpu = medians_after_warmup(values)
        results[name] = {"s_per_epoch": wall, "cpu_s_per_epoch": cpu, "megabytes": stored[name].nbytes / 1e6}
    return results


def compare_sgd(device: torch.device, args) -> dict:
    """Seconds for one epoch's optimizer steps (480 by default) with SGD's default, foreach and fused."""
    torch.manual_seed(args.seed)
    model = StudioModel((args.hidden,)).to(device)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-6
    steps = -(-48_000 // args.batch_size)
    optimizers = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    optimizers = {name: torch.optim.SGD(model.parameters(), lr=args.lr, **options)
                  for name, options in optimizers.items()}
    clocks = {name: [] for name in optimizers}

    def run(opt) -> None:
        for _ in range(steps):
            opt.step()

    for _ in range(1 + args.choice_epochs):
        for name, opt in optimizers.items():
            clocks[name].append(clocked(lambda: run(opt), device))
    results = {}
    for name, values in clocks.items():
        wall, cpu = medians_after_warmup(values)
        results[name] = {"s": wall, "cpu_s": cpu}
    return results


THREAD_MODELS = [(32,), (256,), (1024,), (2048, 2048)]
THREAD_ROUNDS = 3


def compare_threads(args, splits: data.Splits) -> dict:
    """Wall-clock milliseconds per CPU training step with 1 and 2 threads, for several model sizes.

    Each figure is the median of THREAD_ROUNDS rounds after a warm-up round,
    with the two thread counts interleaved."""
    cpu = torch.device("cpu")
    loader = StudioDeviceDataLoader(splits.train_images[:48_000], splits.train_labels[:48_000],
                                    args.batch_size, cpu, seed=args.seed)
    previous = torch.get_num_threads()
    results = {}
    for hidden in THREAD_MODELS:
        torch.manual_seed(args.seed)
        model = StudioModel(hidden)
        opt = studio.make_optimizer("sgd", model.parameters(), 0.01)
        parameters = sum(p.numel() for p in model.parameters())
        # About 2e9 FLOPs per round, a few tens of milliseconds on one idle core.
        steps = max(5, min(100, int(2e9 / (6 * parameters * args.batch_size))))
        per_step = {1: [], 2: []}

        def run() -> None:
            batches = iter(loader)
            for _ in range(steps):
                xb, yb = next(batches)
                studio.loss_batch(model, F.cross_entropy, xb, yb, opt)

        for _ in range(1 + THREAD_ROUNDS):
            for threads in per_step:
                torch.set_num_threads(threads)
                per_step[threads].append(timed(run, cpu) / steps * 1e3)
        results["-".join(str(h) for h in (INPUT_SIZE, *hidden, NUM_CLASSES))] = {
            "parameters": parameters, "chosen": choose_threads(parameters),
            **{f"{threads}_thread_ms_per_step": median_after_warmup(values)
               for threads, values in per_step.items()}}
    torch.set_num_threads(previous)
    return results


def same_weights_with_1_and_2_threads(args, splits: data.Splits, steps: int = 200) -> bool:
    """Train the same model from the same weights on the same batches with 1 and with 2 CPU
    threads, and return whether the weights come out bit for bit equal."""
    cpu = torch.device("cpu")
    previous = torch.get_num_threads()
    states = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        torch.manual_seed(args.seed)
        model = StudioModel((args.hidden,))
        opt = studio.make_optimizer("sgd", model.parameters(), args.lr)
        loader = StudioDeviceDataLoader(splits.train_images[:48_000], splits.train_labels[:48_000],
                                        args.batch_size, cpu, seed=args.seed)
        for _, (xb, yb) in zip(range(steps), loader):
            studio.loss_batch(model, F.cross_entropy, xb, yb, opt)
        states.append(model.state_dict())
    torch.set_num_threads(previous)
    return all(torch.equal(states[0][key], states[1][key]) for key in states[0])


def compare_threads_with_busy_core(args, splits: data.Splits) -> dict:
    """compare_threads while a second Python process spins on one core, as another user's job would."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        return compare_threads(args, splits)
    finally:
        spinner.kill()
        spinner.wait()


# --- Output ------------------------------------------------------------------

def format_seconds(value: float) -> str:
    return f"{value:.3g}"


MAIN_ROWS = [
    ("tutorial pipeline, training epoch (s)", "tutorial_s_per_epoch"),
    ("studio path, training epoch (s)", "studio_s_per_epoch"),
    ("speedup (tutorial / studio)", "speedup"),
    ("tutorial pipeline, training epoch, CPU time (s)", "tutorial_cpu_s_per_epoch"),
    ("studio path, training epoch, CPU time (s)", "studio_cpu_s_per_epoch"),
    ("speedup in CPU time", "cpu_time_speedup"),
    ("tutorial pipeline, training and validation as fit runs them (s)", "tutorial_fit_epoch_s"),
    ("studio path, training and validation as fit runs them (s)", "studio_fit_epoch_s"),
    ("speedup of a whole fit epoch", "fit_epoch_speedup"),
    ("eager floor: same steps on one fixed batch (s)", "eager_floor_s_per_epoch"),
    ("eager floor, CPU time (s)", "eager_floor_cpu_s_per_epoch"),
    ("compute floor at the model's matmul rate (s)", "floor_s_per_epoch"),
    ("compute floor at the peak matmul rate (s)", "peak_floor_s_per_epoch"),
    ("tutorial validation pass, batches of 100 (s)", "tutorial_val_s"),
    ("studio validation pass, batches of 10,000 (s)", "studio_val_s"),
    ("validation as one batch of all images (s)", "one_batch_val_s"),
    ("validation compute floor (s)", "val_floor_s"),
    ("matmul rate, model shapes at batch 100 (GFLOP/s)", "matmul_gflops_model_shapes"),
    ("matmul rate, validation shapes (GFLOP/s)", "matmul_gflops_validation_shapes"),
    ("matmul rate, large square matmul (GFLOP/s)", "matmul_gflops_peak"),
]


def main_table(results: list[dict]) -> str:
    lines = ["| measure | " + " | ".join(r["device"].upper() for r in results) + " |",
             "|---|" + "---:|" * len(results)]
    for label, key in MAIN_ROWS:
        cells = []
        for r in results:
            value = r[key]
            if "speedup" in key:
                cells.append(f"{value:.1f}x")
            elif key.startswith("matmul"):
                cells.append(f"{value:.0f}")
            else:
                cells.append(format_seconds(value))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


BREAKDOWN_LABELS = {
    "loader": "loader: randperm, index_select, uint8 to float32",
    "forward": "forward: linear, ReLU, linear, cross-entropy",
    "backward": "backward",
    "optimizer_step": "SGD step and zero_grad",
    "remainder": "remainder: real batches instead of one hot batch, noise",
}


def breakdown_table(result: dict) -> str:
    wall, cpu = result["breakdown_s"], result["breakdown_cpu_s"]
    lines = [f"| part of the studio loop ({result['device'].upper()}) | s | share | CPU s | share |",
             "|---|---:|---:|---:|---:|"]
    for key, label in BREAKDOWN_LABELS.items():
        lines.append(f"| {label} | {format_seconds(wall[key])} | {wall[key] / wall['loop']:.0%} | "
                     f"{format_seconds(cpu[key])} | {cpu[key] / cpu['loop']:.0%} |")
    lines.append(f"| whole loop: studio loader and loss_batch | {format_seconds(wall['loop'])} | 100% | "
                 f"{format_seconds(cpu['loop'])} | 100% |")
    return "\n".join(lines)


def choices_table(choices: dict) -> str:
    lines = ["| choice | variant | wall clock | CPU time |", "|---|---|---:|---:|"]
    for device, storage in choices["storage"].items():
        for name, value in storage.items():
            lines.append(f"| split storage ({device}), training epoch | {name}, {value['megabytes']:.0f} MB | "
                         f"{format_seconds(value['s_per_epoch'])} s | {format_seconds(value['cpu_s_per_epoch'])} s |")
    for device, sgd in choices["sgd"].items():
        for name, value in sgd.items():
            lines.append(f"| SGD, one epoch of steps ({device}) | {name} | {format_seconds(value['s'])} s | "
                         f"{format_seconds(value['cpu_s'])} s |")
    for label, key in (("CPU threads", "threads"), ("CPU threads, one core busy", "threads_busy_core")):
        for model, value in choices.get(key, {}).items():
            lines.append(f"| {label}, {model} ({value['parameters']:,} parameters) | 1 / 2 threads | "
                         f"{value['1_thread_ms_per_step']:.3g} / {value['2_thread_ms_per_step']:.3g} "
                         f"ms/step | |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=100, help="images per training batch (default: 100)")
    parser.add_argument("--hidden", type=int, default=32, help="hidden units of the model (default: 32)")
    parser.add_argument("--lr", type=float, default=0.5, help="SGD learning rate (default: 0.5)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the split, weights and order (default: 42)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="timed epochs per pipeline after one warm-up epoch (default: 3)")
    parser.add_argument("--choice-epochs", type=int, default=5,
                        help="timed repeats of the storage and SGD variants after a warm-up (default: 5)")
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all",
                        help="devices to measure; all: the CPU, and CUDA when available (default: all)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: what core.device.choose_threads picks for the model)")
    parser.add_argument("--busy-core", action="store_true",
                        help="also compare 1 and 2 threads while a spinning process keeps one core busy")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.epochs < 3:
        parser.error(f"argument --epochs: {args.epochs} is too few: choose at least 3 for a median")
    if args.choice_epochs < 1:
        parser.error(f"argument --choice-epochs: {args.choice_epochs} is invalid: choose at least 1")
    if args.threads is not None and args.threads < 1:
        parser.error(f"argument --threads: {args.threads} is invalid: choose at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("argument --device: CUDA is not available on this machine: choose cpu or all")
    devices = [torch.device("cpu")] if args.device != "cuda" else []
    if args.device in ("all", "cuda") and torch.cuda.is_available():
        # NOTE: the CUDA path has not been run on a GPU yet; only the CPU numbers are measured.
        devices.append(torch.device("cuda"))

    parameters = INPUT_SIZE * args.hidden + args.hidden + args.hidden * NUM_CLASSES + NUM_CLASSES
    threads = args.threads or choose_threads(parameters)
    torch.set_num_threads(threads)
    load_before = load_average()

    root = data.data_dir()
    data.verify(data.MNIST, root)
    splits = data.load(data.MNIST, root)
    results = [measure_device(device, args, root, splits) for device in devices]
    choices = {"storage": {d.type: compare_storage(d, args, splits) for d in devices},
               "sgd": {d.type: compare_sgd(d, args) for d in devices},
               "threads": compare_threads(args, splits),
               "same_weights_1_and_2_threads": same_weights_with_1_and_2_threads(args, splits)}
    if args.busy_core:
        choices["threads_busy_core"] = compare_threads_with_busy_core(args, splits)
    torch.set_num_threads(threads)
    load_after = load_average()

    print(f"Epoch speed: {INPUT_SIZE}-{args.hidden}-{NUM_CLASSES} MLP, batch {args.batch_size}, "
          f"lr {args.lr:g}, seed {args.seed}, {results[0]['train_samples']:,} training and "
          f"{results[0]['val_samples']:,} validation images of MNIST")
    print(f"torch {torch.__version__}, {threads} CPU thread(s), {os.cpu_count()} logical CPUs, "
          f"1-minute load average {format_load(load_before)} before and {format_load(load_after)} after; "
          f"medians of {args.epochs} epochs after 1 warm-up epoch\n")
    print(main_table(results), "\n")
    for result in results:
        print(breakdown_table(result), "\n")
    print(choices_table(choices))
    print(f"Same weights after 200 steps with 1 and with 2 CPU threads: "
          f"{choices['same_weights_1_and_2_threads']}\n")
    for result in results:
        gaps = [abs(a - b) for a, b in zip(result["val_acc"]["tutorial"], result["val_acc"]["studio"])]
        print(f"{result['device'].upper()}: same initial weights: {result['same_initial_weights']}; "
              f"val accuracy after each epoch, tutorial {[round(a, 4) for a in result['val_acc']['tutorial']]}, "
              f"studio {[round(a, 4) for a in result['val_acc']['studio']]}, largest gap {max(gaps):.4f}")

    if args.json:
        # The top-level keys describe the device the app trains on by default.
        default = next((r for r in results if r["device"] == get_default_device().type), results[0])
        summary = {key: default[key] for key in (
            "device", "tutorial_s_per_epoch", "studio_s_per_epoch", "speedup", "tutorial_cpu_s_per_epoch",
            "studio_cpu_s_per_epoch", "cpu_time_speedup", "tutorial_fit_epoch_s", "studio_fit_epoch_s",
            "fit_epoch_speedup", "floor_s_per_epoch", "peak_floor_s_per_epoch",
            "eager_floor_s_per_epoch", "tutorial_val_s", "studio_val_s", "one_batch_val_s", "val_floor_s")}
        summary.update(devices=results, choices=choices, threads=threads, torch=torch.__version__,
                       load_average_before=load_before, load_average_after=load_after,
                       batch_size=args.batch_size, hidden=args.hidden, lr=args.lr, seed=args.seed)
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
