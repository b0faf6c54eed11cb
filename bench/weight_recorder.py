"""Measure what core.introspect.WeightRecorder adds to a training epoch.

Trains one epoch at a time on the real MNIST (48,000 training images), with and
without a recorder, alternating so both see the same machine load, and prints
the median epoch time of each and the overhead in percent.

    python -m bench.weight_recorder [--hidden 32] [--every 10] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from core import data
from core.config import Phase, TrainConfig
from core.device import device_label, resolve_device
from core.introspect import WeightRecorder
from core.training import accuracy, fit, prepare_run


def time_epoch(state, callback) -> float:
    if state.device.type == "cuda":
        torch.cuda.synchronize(state.device)
    start = time.perf_counter()
    fit(1, 0.1, state.model, F.cross_entropy, state.train_dl, state.valid_dl, accuracy,
        opt=state.opt, history=state.history, callback=callback)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="*", default=[32], help="hidden layer sizes (default: 32)")
    parser.add_argument("--every", type=int, default=10, help="recorder: capture gradients every N batches")
    parser.add_argument("--batch-size", type=int, default=100, help="images per batch (default: 100)")
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed for each variant (default: 5)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    config = TrainConfig(hidden=tuple(args.hidden), batch_size=args.batch_size, phases=(Phase(1, 0.1),))
    splits = data.load(data.MNIST)
    plain = prepare_run(config, splits, device)
    recorded = prepare_run(config, splits, device)
    recorder = WeightRecorder(recorded.model, every=args.every)

    time_epoch(plain, None)  # warm-up: first-call allocations and kernel selection
    time_epoch(recorded, recorder)
    plain_s, recorded_s = [], []
    for _ in range(args.repeats):
        plain_s.append(time_epoch(plain, None))
        recorded_s.append(time_epoch(recorded, recorder))

    base, with_recorder = statistics.median(plain_s), statistics.median(recorded_s)
    print(f"device {device_label(device)}, torch threads {torch.get_num_threads()}, hidden {args.hidden}, "
          f"batch size {args.batch_size}, every {args.every}, {len(plain.train_dl)} batches per epoch")
    print(f"median epoch without recorder {base:.3f} s, with recorder {with_recorder:.3f} s, "
          f"overhead {100 * (with_recorder / base - 1):+.1f}%")


if __name__ == "__main__":
    main()
