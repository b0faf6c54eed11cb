"""Accuracy on canvas-like drawings of MNIST test digits, against accuracy on the clean test set.

Run from the repository root:

    .venv/bin/python bench/drawn_digits.py [--n 2000] [--seed 0] [--json]

For each model (by default the `tutorial` and `drawing` presets of
core/train.py, trained here on the real MNIST with the preset's own seed)
the script reports:
- clean: accuracy on the 10,000 MNIST test images;
- drawn: accuracy of `core.preprocess.canvas_to_mnist` plus the model on `--n`
  drawings made by `core.drawings.generate` from MNIST test digits;
- unevened: the same pipeline with the pen width left as drawn
  (`normalise_stroke=False`), to show what evening the stroke adds;
- naive: the whole canvas resized to 28x28 (after the same ink extraction,
  so every encoding reads as bright ink on black), the baseline to beat.
The ratio drawn / clean is 1.0 when drawings read as well as test digits. A
second table splits `drawn` and `unevened` by pen width relative to the
digit's size and by the canvas encoding.

Training times are wall-clock and CPU seconds of this process. Small models
train on one thread (`core.device.choose_threads`), so on a busy machine the
CPU seconds are the steadier figure.

`--checkpoint PRESET=PATH` loads a model saved by `python -m core.train --save`
in place of training that preset; `--save-dir DIR` writes the trained models.
`--ablation N` adds a table that splits the loss of accuracy into its causes
(see `make_ablation_inputs`). `--json` makes the last line of the output one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

# Running `python bench/drawn_digits.py` puts bench/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataclasses import replace  # noqa: E402

import torch.nn.functional as F  # noqa: E402

from core import data, drawings, preprocess  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.model import load_checkpoint, predict_proba, save_checkpoint  # noqa: E402
from core.train import PRESETS  # noqa: E402
from core.training import prepare_run, test_accuracy, train_phases  # noqa: E402

# Pen width as a fraction of the digit's longest side; MNIST's is about 0.11.
PEN_BUCKETS = (("< 0.06", 0.0, 0.06), ("0.06 to 0.15", 0.06, 0.15), ("> 0.15", 0.15, 1.0))


def naive_resize(rgba: np.ndarray) -> torch.Tensor:
    """Return the whole canvas's ink resized to (1, 28, 28), with no cropping or centring."""
    ink = preprocess.ink_from_rgba(rgba)
    return torch.from_numpy(preprocess.resize(ink, 28, 28))[None]


def upsampled_canvas(digit: np.ndarray, size: int = 200) -> np.ndarray:
    """Return an MNIST digit upsampled (bicubic) to size x size in the middle of a black canvas, white ink."""
    image = torch.from_numpy(digit).float()[None, None] / 255
    upsampled = F.interpolate(image, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    coverage = np.zeros((drawings.CANVAS_PX, drawings.CANVAS_PX), np.float32)
    start = (drawings.CANVAS_PX - size) // 2
    coverage[start:start + size, start:start + size] = upsampled[0, 0].numpy()
    return drawings.encode(coverage, "white_on_black")


def make_ablation_inputs(splits: data.Splits, n: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Return inputs that separate where accuracy is lost, for the first n drawings' source digits.

    "clean": the MNIST test images themselves. "upsampled": each digit upsampled
    onto the canvas and run through canvas_to_mnist, so the pipeline alone.
    "redrawn upright": the digit drawn as in its drawing but upright, unstretched,
    unsheared, with a pen 0.11 of its size (MNIST's), so the redrawing with a
    round pen alone. "drawn": the drawing with its full style."""
    images, labels = splits.test_images.numpy(), splits.test_labels.numpy()
    inputs = {"clean": [], "upsampled": [], "redrawn upright": [], "drawn": []}
    sources = []
    for drawing in drawings.generate(images, labels, n, seed):
        digit, style = images[drawing.index], drawing.style
        upright = replace(style, rotation_deg=0.0, stretch=1.0, shear=0.0, pen_px=0.11 * style.size_px)
        inputs["clean"].append(torch.from_numpy(digit).float()[None] / 255)
        inputs["upsampled"].append(preprocess.canvas_to_mnist(upsampled_canvas(digit)))
        inputs["redrawn upright"].append(preprocess.canvas_to_mnist(drawings.draw(digit, upright)))
        inputs["drawn"].append(preprocess.canvas_to_mnist(drawing.rgba))
        sources.append(drawing.label)
    return {name: torch.stack(images) for name, images in inputs.items()}, torch.tensor(sources)


def make_inputs(splits: data.Splits, n: int, seed: int) -> tuple[dict[str, torch.Tensor], dict]:
    """Generate the drawings; return each pipeline's (n, 1, 28, 28) inputs and the drawings' labels and styles.

    An empty result from canvas_to_mnist (never expected for a generated
    drawing) becomes a black image, which the model then reads as it may."""
    inputs = {"drawn": [], "unevened": [], "naive": []}
    labels, ratios, encodings = [], [], []
    seconds = {"generate": 0.0, "drawn": 0.0, "unevened": 0.0, "naive": 0.0}
    pipelines = {"drawn": preprocess.canvas_to_mnist,
                 "unevened": lambda rgba: preprocess.canvas_to_mnist(rgba, normalise_stroke=False),
                 "naive": naive_resize}
    generated = drawings.generate(splits.test_images.numpy(), splits.test_labels.numpy(), n, seed)
    while True:
        start = time.perf_counter()
        drawing = next(generated, None)
        seconds["generate"] += time.perf_counter() - start
        if drawing is None:
            break
        for name, pipeline in pipelines.items():
            start = time.perf_counter()
            image = pipeline(drawing.rgba)
            seconds[name] += time.perf_counter() - start
            inputs[name].append(torch.zeros(1, 28, 28) if image is None else image)
        labels.append(drawing.label)
        ratios.append(drawing.style.pen_px / drawing.style.size_px)
        encodings.append(drawing.style.encoding)
    stacked = {name: torch.stack(images) for name, images in inputs.items()}
    meta = {"labels": torch.tensor(labels), "ratios": np.array(ratios), "encodings": np.array(encodings),
            "seconds": seconds}
    return stacked, meta


def get_model(preset: str, splits: data.Splits, checkpoints: dict[str, str], save_dir: Path | None):
    """Load the preset's model from a checkpoint, or train it.

    Returns (model, training seconds, training CPU seconds), the seconds None for a loaded model."""
    if preset in checkpoints:
        model, _ = load_checkpoint(checkpoints[preset])
        return model, None, None
    config = TrainConfig(**PRESETS[preset]).validate()
    state = prepare_run(config, splits)
    start, start_cpu = time.perf_counter(), time.process_time()
    train_phases(state, config.phases)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    model = state.model.cpu().eval()
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(model, save_dir / f"{preset}.pt", train_config=config.to_dict(),
                        history=state.history.to_dict())
    return model, seconds, cpu_seconds


def accuracy_of(model, images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Return a boolean array: whether each image is read as its label."""
    return (predict_proba(model, images).argmax(dim=1) == labels).numpy()


def evaluate_model(model, splits: data.Splits, inputs: dict[str, torch.Tensor], meta: dict) -> dict:
    _, clean = test_accuracy(model, splits, torch.device("cpu"))
    result = {"clean": round(float(clean), 4)}
    correct = {name: accuracy_of(model, images, meta["labels"]) for name, images in inputs.items()}
    for name, ok in correct.items():
        result[name] = round(float(ok.mean()), 4)
    result["drawn_over_clean"] = round(result["drawn"] / result["clean"], 4)
    groups = {bucket: (meta["ratios"] >= low) & (meta["ratios"] < high) for bucket, low, high in PEN_BUCKETS}
    groups.update({encoding: meta["encodings"] == encoding for encoding in drawings.ENCODINGS})
    result["groups"] = {}
    for group, inside in groups.items():
        result["groups"][group] = {
            "count": int(inside.sum()),
            "drawn": round(float(correct["drawn"][inside].mean()), 4),
            "unevened": round(float(correct["unevened"][inside].mean()), 4),
        }
    return result


def format_ablation(ablation: dict[str, dict[str, float]], n: int) -> str:
    names = list(next(iter(ablation.values())))
    lines = [f"Where accuracy is lost, on the source digits of the first {n} drawings:", "",
             "| model | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for model, accuracies in ablation.items():
        lines.append(f"| {model} | " + " | ".join(f"{accuracies[name]:.4f}" for name in names) + " |")
    return "\n".join(lines)


def format_tables(results: dict[str, dict]) -> str:
    lines = ["| model | train s (CPU s) | clean | drawn | drawn / clean | unevened | naive |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        seconds = ("loaded" if r["train_seconds"] is None
                   else f"{r['train_seconds']:.0f} ({r['train_cpu_seconds']:.0f})")
        lines.append(f"| {name} | {seconds} | {r['clean']:.4f} | {r['drawn']:.4f} | "
                     f"{r['drawn_over_clean']:.3f} | {r['unevened']:.4f} | {r['naive']:.4f} |")
    lines += ["", "| model | drawings with | count | drawn | unevened |", "|---|---|---|---|---|"]
    for name, r in results.items():
        for group, g in r["groups"].items():
            label = f"pen width / size {group}" if group not in drawings.ENCODINGS else f"encoding {group}"
            lines.append(f"| {name} | {label} | {g['count']} | {g['drawn']:.4f} | {g['unevened']:.4f} |")
    return "\n".join(lines)


def parse_checkpoints(values: list[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    checkpoints = {}
    for value in values:
        preset, sep, path = value.partition("=")
        if not sep or preset not in PRESETS or not path:
            parser.error(f"argument --checkpoint: {value!r} is invalid: expected PRESET=PATH "
                         f"with PRESET one of {sorted(PRESETS)}")
        checkpoints[preset] = path
    return checkpoints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of drawings (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawings (default: 0)")
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=["tutorial", "drawing"],
                        help="models to report, by preset name (default: tutorial drawing)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="PRESET=PATH",
                        help="load this preset's model from a checkpoint instead of training it; repeatable")
    parser.add_argument("--save-dir", type=Path, help="write each trained model to DIR/PRESET.pt")
    parser.add_argument("--ablation", type=int, default=0, metavar="N",
                        help="also split the loss of accuracy into its causes on N drawings (default: 0, off)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"argument --n: {args.n} is invalid: choose at least 1")
    if args.ablation < 0:
        parser.error(f"argument --ablation: {args.ablation} is invalid: choose 0 (off) or more")
    checkpoints = parse_checkpoints(args.checkpoint, parser)

    load_before = os.getloadavg()[0]
    splits = data.load(data.MNIST)
    print(f"generating {args.n} drawings (seed {args.seed}) and preprocessing them three ways ...", flush=True)
    inputs, meta = make_inputs(splits, args.n, args.seed)
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in meta["seconds"].items()), flush=True)

    if args.ablation:
        print(f"preparing the ablation inputs for {args.ablation} drawings ...", flush=True)
        ablation_inputs, ablation_labels = make_ablation_inputs(splits, args.ablation, args.seed)
    results, ablation = {}, {}
    for preset in args.presets:
        print(f"{'loading' if preset in checkpoints else 'training'} the {preset} model ...", flush=True)
        model, seconds, cpu_seconds = get_model(preset, splits, checkpoints, args.save_dir)
        results[preset] = {"train_seconds": None if seconds is None else round(seconds, 1),
                           "train_cpu_seconds": None if cpu_seconds is None else round(cpu_seconds, 1),
                           **evaluate_model(model, splits, inputs, meta)}
        if args.ablation:
            ablation[preset] = {name: round(float(accuracy_of(model, images, ablation_labels).mean()), 4)
                                for name, images in ablation_inputs.items()}

    load_after = os.getloadavg()[0]
    print()
    print(f"1-minute load average: {load_before:.1f} before, {load_after:.1f} after")
    print(format_tables(results))
    if ablation:
        print()
        print(format_ablation(ablation, args.ablation))
    print()
    for name, r in results.items():
        print(f"{name}: drawn / clean = {r['drawn']:.4f} / {r['clean']:.4f} = {r['drawn_over_clean']:.3f}; "
              f"drawn / naive = {r['drawn'] / max(r['naive'], 1e-9):.1f}x")
    if args.json:
        print(json.dumps({"n": args.n, "seed": args.seed, "machine": platform.machine(),
                          "torch": torch.__version__, "load_before": load_before, "load_after": load_after,
                          "preprocess_seconds": {k: round(v, 1) for k, v in meta["seconds"].items()},
                          "models": results, "ablation": ablation}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
