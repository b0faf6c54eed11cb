"""Headless training with the app's defaults: `python -m core.train --help`.

Prints one progress line per epoch and, last, one JSON object with the results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from core import data
from core.config import DEVICES, OPTIMIZERS, Phase, TrainConfig
from core.device import device_label, resolve_device
from core.model import ACTIVATIONS, save_checkpoint
from core.training import TrainingDiverged, prepare_run, test_accuracy, train_phases

# The recommended recipe for reading drawn digits on the Predict page; see
# docs/benchmarks.md for how it was chosen and what it reaches.
PRESETS = {
    "tutorial": dict(hidden=(32,), batch_size=100, phases=(Phase(5, 0.5), Phase(5, 0.1))),
    "drawing": dict(hidden=(256,), batch_size=100, augment=True,
                    phases=(Phase(16, 0.5), Phase(8, 0.1))),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.train", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="start from a named recipe; other flags override it")
    parser.add_argument("--dataset", choices=sorted(data.DATASETS), default=None)
    parser.add_argument("--hidden", type=int, nargs="*", metavar="N",
                        help="hidden layer sizes, for example --hidden 64 32 (default: 32)")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default=None)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="images per batch (default: 100)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the first phase (default: 5)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate of the first phase (default: 0.5)")
    parser.add_argument("--then", nargs=2, action="append", metavar=("EPOCHS", "LR"), default=None,
                        help="a further phase of EPOCHS at learning rate LR; repeatable")
    parser.add_argument("--val-pct", type=float, default=None, help="validation fraction (default: 0.2)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: 42)")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--augment", action="store_true", default=None,
                        help="augment training images like drawings (affine jitter, pen width)")
    parser.add_argument("--subset", type=int, default=None,
                        help="train on only this many training images (default: all)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: 1 for models under 1,000,000 parameters, "
                             "else torch's default)")
    parser.add_argument("--save", metavar="PATH", help="write a checkpoint (state dict, config, history)")
    return parser


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrainConfig:
    values = dict(PRESETS[args.preset]) if args.preset else {}
    for key in ("dataset", "activation", "optimizer", "batch_size", "val_pct", "seed", "subset", "augment"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    values["device"] = args.device
    if args.hidden is not None:
        values["hidden"] = tuple(args.hidden)

    phases = list(values.get("phases", (Phase(5, 0.5),)))
    if args.epochs is not None or args.lr is not None:
        first = phases[0]
        phases = [Phase(args.epochs if args.epochs is not None else first.epochs,
                        args.lr if args.lr is not None else first.lr)]
    for epochs, lr in args.then or []:
        try:
            phases.append(Phase(int(epochs), float(lr)))
        except ValueError:
            parser.error(f"argument --then: invalid phase {epochs} {lr}: expected EPOCHS (int) and LR (float)")
    values["phases"] = tuple(phases)

    try:
        return TrainConfig(**values).validate()
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = config_from_args(args, parser)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"argument --threads: {args.threads} is invalid: choose at least 1")
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(config.device)
    except ValueError as exc:
        parser.error(str(exc))

    try:
        splits = data.load(data.get_spec(config.dataset))
    except data.DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    state = prepare_run(config, splits, device)
    state.threads = args.threads

    def report(progress) -> None:
        if progress.kind != "epoch":
            return
        if progress.epoch == 1:
            e0 = progress.history.epochs[0]
            print(f"epoch   0/{progress.epochs_total}  untrained             "
                  f"val_loss {e0['val_loss']:.4f}  val_acc {e0['val_acc']:.4f}", flush=True)
        e = progress.history.last
        print(f"epoch {e['epoch']:>3}/{progress.epochs_total}  lr {e['lr']:<6g} "
              f"train_loss {e['train_loss']:.4f}  val_loss {e['val_loss']:.4f}  "
              f"val_acc {e['val_acc']:.4f}  {e['seconds']:.2f}s", flush=True)

    start = time.perf_counter()
    try:
        train_phases(state, config.phases, callback=report)
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start

    test_loss, test_acc = test_accuracy(state.model, splits, device)
    last = state.history.last
    if args.save:
        save_checkpoint(state.model.cpu(), args.save, train_config=config.to_dict(),
                        history=state.history.to_dict())
    print(json.dumps({
        "val_acc": last["val_acc"], "val_loss": last["val_loss"], "test_acc": test_acc,
        "test_loss": test_loss, "epochs": len(state.history.epochs) - 1, "seconds": round(seconds, 3),
        "device": device_label(device), "config": config.to_dict(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
