"""The code behind a run: the core functions that ran, and a standalone script that reproduces it."""

from __future__ import annotations

import ast
import inspect
import pprint

from core import augment
from core.config import TrainConfig
from core.device import DeviceDataLoader
from core.model import MnistModel
from core.training import EVAL_BATCH_SIZE, evaluate, fit, loss_batch


def code_of_run(config: TrainConfig | dict | None = None) -> dict[str, str]:
    """Return {name: source} of the core code a training run executes, in reading order.

    With a config whose `augment` is on, `augment_batch` is included too."""
    parts = {"DeviceDataLoader": DeviceDataLoader, "MnistModel": MnistModel,
             "loss_batch": loss_batch, "evaluate": evaluate, "fit": fit}
    augmented = config.get("augment") if isinstance(config, dict) else getattr(config, "augment", False)
    if augmented:
        parts["augment_batch"] = augment.augment_batch
    return {name: inspect.getsource(obj) for name, obj in parts.items()}


def _augment_source() -> str:
    """Return core/augment.py without its docstring and imports: constants, comments and augment_batch.

    The exported script imports math, torch and F itself."""
    source = inspect.getsource(augment)
    tree = ast.parse(source)
    header_end = max(node.end_lineno for node in tree.body
                     if isinstance(node, (ast.Import, ast.ImportFrom))
                     or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)))
    return "\n".join(source.splitlines()[header_end:]).strip() + "\n"


def _plain_config(config: TrainConfig | dict) -> dict:
    """Validate a config and return it as a dict of plain literals, safe to embed as code."""
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    config.validate()
    return {
        "dataset": config.dataset,
        "hidden": [int(h) for h in config.hidden],
        "activation": config.activation,
        "optimizer": config.optimizer,
        "batch_size": int(config.batch_size),
        "phases": [[int(p.epochs), float(p.lr)] for p in config.phases],
        "val_pct": float(config.val_pct),
        "seed": int(config.seed),
        "device": config.device,
        "augment": bool(config.augment),
        "subset": None if config.subset is None else int(config.subset),
    }


def export_script(config: TrainConfig | dict, *, val_accs: list[float] | None = None) -> str:
    """Return a self-contained Python script that trains `config` with plain PyTorch and torchvision.

    The script imports nothing from this app. It repeats the app's split (a
    numpy permutation from the seed), its initialisation (torch.manual_seed
    before building the model) and its batch order (a CPU torch.Generator
    seeded with the seed). With augment on, it carries a copy of the app's
    augment_batch. So on the same device, PyTorch version and thread count it
    reaches the same validation accuracy.
    `val_accs`, the app's validation accuracy per epoch (epoch 0 first), is
    written into the header for comparison. Raises ValueError for an invalid config."""
    plain = _plain_config(config)
    title = "Fashion-MNIST" if plain["dataset"] == "fashion-mnist" else "MNIST"
    phases = ", ".join(f"{epochs} epoch{'s' if epochs != 1 else ''} at lr {lr:g}" for epochs, lr in plain["phases"])
    header = [
        f'"""Train a feedforward network on {title} with plain PyTorch: an export of an MNIST Studio run.',
        "",
        f"Network: 784 -> {' -> '.join(str(h) for h in plain['hidden'] + [10])}, {plain['activation']} "
        f"activations, {plain['optimizer']} optimizer, batch size {plain['batch_size']}.",
        f"Schedule: {phases}. Validation fraction {plain['val_pct']:g}, seed {plain['seed']}.",
        "Augmentation: " + ("on, with the app's augment_batch copied below." if plain["augment"]
                            else "off."),
        "",
        "The split, initialisation and batch order repeat the app's, so on the same device",
        "and PyTorch version the validation accuracy should match the app's.",
    ]
    if val_accs:
        header.append("The app reported validation accuracy per epoch (epoch 0 is the untrained model):")
        header.append("    " + ", ".join(f"{acc:.4f}" for acc in val_accs))
    header += ["", "Needs torch, torchvision and numpy. Run with --help for the options.", '"""']

    augment_code = _augment_source() if plain["augment"] else "augment_batch = None"
    return "\n".join([
        "\n".join(header), "", _IMPORTS,
        f"CONFIG = {pprint.pformat(plain, sort_dicts=False, width=100)}",
        f"EVAL_BATCH_SIZE = {EVAL_BATCH_SIZE!r}", "", "",
        augment_code, "", _BODY,
    ])


_IMPORTS = '''import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
'''

_BODY = '''
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU}
DATASETS = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}


def default_data_root() -> Path:
    """MNIST Studio's data cache: $MNIST_STUDIO_DATA, else $XDG_CACHE_HOME/mnist-studio, else ~/.cache/mnist-studio."""
    if os.environ.get("MNIST_STUDIO_DATA"):
        return Path(os.environ["MNIST_STUDIO_DATA"]).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "mnist-studio"


def split_indices(n, val_pct, seed):
    """Shuffle range(n) with the seed: the first int(val_pct * n) are the validation indices, the rest train."""
    n_val = int(val_pct * n)
    idxs = np.random.default_rng(seed).permutation(n)
    return idxs[n_val:], idxs[:n_val]


def build_model(hidden, activation):
    layers, width = [], 28 * 28
    for size in hidden:
        layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
        width = size
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(nn.Flatten(), *layers)


def to_inputs(images, device):
    """(N, 28, 28) uint8 -> (N, 784) float32 in [0, 1] on the device."""
    return images.reshape(len(images), -1).to(device).float().div_(255)


def batches(images, labels, batch_size, generator=None, transform=None):
    """Yield (images, labels) batches, in a fresh random order when a generator is given."""
    n = len(labels)
    order = torch.randperm(n, generator=generator).to(images.device) if generator is not None else None
    for start in range(0, n, batch_size):
        if order is None:
            xb, yb = images[start:start + batch_size], labels[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            xb, yb = images.index_select(0, idx), labels.index_select(0, idx)
        if transform is not None:
            xb = transform(xb, generator)
        yield xb, yb


def evaluate(model, images, labels):
    """Return (mean cross-entropy, accuracy) over a split, without gradients."""
    model.eval()
    total_loss = correct = 0.0
    with torch.no_grad():
        for xb, yb in batches(images, labels, EVAL_BATCH_SIZE):
            logits = model(xb)
            total_loss += F.cross_entropy(logits, yb).item() * len(yb)
            correct += (logits.argmax(dim=1) == yb).sum().item()
    model.train()
    return total_loss / len(labels), correct / len(labels)


def main():
    parser = argparse.ArgumentParser(description="Train the exported MNIST Studio run with plain PyTorch.")
    parser.add_argument("--data-root", type=Path, default=default_data_root(),
                        help="folder holding torchvision's MNIST/ or FashionMNIST/ (default: %(default)s)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=CONFIG["device"],
                        help="where to train; auto picks CUDA when available (default: %(default)s)")
    parser.add_argument("--subset", type=int, default=CONFIG["subset"],
                        help="train on only the first N training images and validate on N // 4 "
                             "(at least 100) (default: %(default)s, all)")
    args = parser.parse_args()
    if args.subset is not None and args.subset < 1:
        parser.error(f"argument --subset: {args.subset} is invalid: choose at least 1")
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)

    # torchvision downloads only the files that are not already under the root.
    train_set = DATASETS[CONFIG["dataset"]](root=str(args.data_root), train=True, download=True)
    images, labels = train_set.data, train_set.targets
    train_idx, val_idx = split_indices(len(labels), CONFIG["val_pct"], CONFIG["seed"])
    if args.subset is not None:
        train_idx = train_idx[:args.subset]
        val_idx = val_idx[:max(args.subset // 4, 100)]
    train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)

    torch.manual_seed(CONFIG["seed"])
    model = build_model(CONFIG["hidden"], CONFIG["activation"]).to(device)
    optimizer_class = torch.optim.Adam if CONFIG["optimizer"] == "adam" else torch.optim.SGD
    opt = optimizer_class(model.parameters(), lr=CONFIG["phases"][0][1])
    train_x, train_y = to_inputs(images[train_idx], device), labels[train_idx].to(device)
    val_x, val_y = to_inputs(images[val_idx], device), labels[val_idx].to(device)
    # A CPU generator gives the same batch order on every device.
    generator = torch.Generator().manual_seed(CONFIG["seed"])

    epochs_total = sum(epochs for epochs, _ in CONFIG["phases"])
    val_loss, val_acc = evaluate(model, val_x, val_y)
    print(f"epoch   0/{epochs_total}  untrained  val_loss {val_loss:.4f}  val_acc {val_acc:.4f}", flush=True)
    epoch = 0
    for epochs, lr in CONFIG["phases"]:
        for group in opt.param_groups:
            group["lr"] = lr
        for _ in range(epochs):
            epoch += 1
            model.train()
            losses = []
            for xb, yb in batches(train_x, train_y, CONFIG["batch_size"], generator, augment_batch):
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                losses.append(loss.detach())
            train_loss = torch.stack(losses).mean().item()
            val_loss, val_acc = evaluate(model, val_x, val_y)
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                print(f"error: the loss diverged (NaN or infinite) in epoch {epoch}: "
                      f"learning rate {lr:g} is too high for this model", file=sys.stderr)
                return 1
            print(f"epoch {epoch:>3}/{epochs_total}  lr {lr:<6g} train_loss {train_loss:.4f}  "
                  f"val_loss {val_loss:.4f}  val_acc {val_acc:.4f}", flush=True)
    print(f"final val_acc {val_acc:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''
