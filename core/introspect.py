"""Look inside a trained network: predictions, confusion, parameters, weights, gradients and saliency.

Every function returns plain numpy arrays, lists and dicts, so results can be
kept in Streamlit's session state or in a checkpoint's extra fields.
"""

from __future__ import annotations

import copy
from functools import partial
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.export import code_of_run, export_script
from core.model import INPUT_SIZE, NUM_CLASSES

__all__ = [
    "Predictions", "predictions", "confusion_matrix", "normalize_rows", "per_class_accuracy",
    "misclassified", "parameter_table", "first_layer_weights", "WeightRecorder", "trace_digit",
    "export_script", "code_of_run",
]

PREDICT_BATCH_SIZE = 10_000


def _as_float_batch(images) -> torch.Tensor:
    """Return images as (N, 784) float32 in [0, 1] on the CPU.

    Accepts a tensor or array of (N, 28, 28), (N, 1, 28, 28) or (N, 784) values,
    either uint8 in 0..255 or floats in [0, 1]."""
    images = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if images.ndim == 0 or images.shape[1:].numel() != INPUT_SIZE:
        raise ValueError(f"images of shape {tuple(images.shape)} are invalid: "
                         "expected (N, 28, 28), (N, 1, 28, 28) or (N, 784)")
    images = images.detach().cpu().reshape(len(images), INPUT_SIZE)
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    images = images.float()
    if len(images) and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"float images must contain values in [0, 1], got [{float(images.min()):g}, "
                         f"{float(images.max()):g}]: divide 0..255 pixels by 255 or pass uint8")
    return images


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# --- Predictions and the errors they make -------------------------------------

class Predictions(NamedTuple):
    """A model's output on a set of images, as numpy arrays indexed like the images."""
    probabilities: np.ndarray  # (N, 10) float32, softmax of the logits
    predicted: np.ndarray  # (N,) int64, argmax of the probabilities
    true: np.ndarray  # (N,) int64, the labels
    confidence: np.ndarray  # (N,) float32, probability of the predicted class


def predictions(model: nn.Module, images, labels, device: torch.device | str | None = None,
                batch_size: int = PREDICT_BATCH_SIZE) -> Predictions:
    """Run the model on images in batches and return probabilities, predictions and labels.

    images: (N, 28, 28) uint8 or floats in [0, 1], for example `Splits.test_images`.
    The model must already be on `device` (default: the device of its parameters)."""
    labels = torch.as_tensor(labels).reshape(-1).long().cpu()
    inputs = _as_float_batch(images)
    if len(inputs) != len(labels):
        raise ValueError(f"{len(inputs)} images but {len(labels)} labels: pass one label per image")
    device = torch.device(device) if device is not None else _model_device(model)
    model_device = _model_device(model)
    if model_device != device and not (device.type == model_device.type and device.index is None):
        raise ValueError(f"the model is on {model_device}, not {device}: move it with model.to({str(device)!r})")

    was_training = model.training
    model.eval()
    chunks = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            xb = inputs[start:start + batch_size].to(device, non_blocking=True)
            chunks.append(F.softmax(model(xb), dim=1).cpu())
    model.train(was_training)

    probabilities = torch.cat(chunks) if chunks else torch.zeros(0, NUM_CLASSES)
    confidence, predicted = probabilities.max(dim=1)
    return Predictions(probabilities.numpy(), predicted.numpy().astype(np.int64),
                       labels.numpy().astype(np.int64), confidence.numpy())


def confusion_matrix(true, pred, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Return the (num_classes, num_classes) int64 count matrix: row = true class, column = predicted."""
    true = np.asarray(true, dtype=np.int64).reshape(-1)
    pred = np.asarray(pred, dtype=np.int64).reshape(-1)
    if true.shape != pred.shape:
        raise ValueError(f"{len(true)} true labels but {len(pred)} predictions: pass one of each per image")
    for name, values in (("true label", true), ("prediction", pred)):
        if len(values) and (values.min() < 0 or values.max() >= num_classes):
            bad = values[(values < 0) | (values >= num_classes)][0]
            raise ValueError(f"{name} {bad} is invalid: classes are 0 to {num_classes - 1}")
    counts = np.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def normalize_rows(matrix) -> np.ndarray:
    """Divide each row of a confusion matrix by its sum, so row i shows where class i's images went.

    A row with no images (a class absent from the labels) stays all zeros."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def per_class_accuracy(true, pred, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Return (num_classes,) float64: the fraction of each class's images predicted correctly.

    A class with no images gets NaN, which Plotly draws as a missing bar."""
    matrix = confusion_matrix(true, pred, num_classes)
    totals = matrix.sum(axis=1)
    correct = np.diag(matrix).astype(np.float64)
    return np.divide(correct, totals, out=np.full(num_classes, np.nan), where=totals > 0)


def misclassified(result: Predictions, *, true_class: int | None = None,
                  predicted_class: int | None = None, descending: bool = True) -> np.ndarray:
    """Return the indices of the wrongly predicted images, sorted by the model's confidence.

    descending=True puts the most confident mistakes first. `true_class` and
    `predicted_class` keep only mistakes on that label or with that prediction.
    Ties keep the images' order."""
    wrong = result.predicted != result.true
    if true_class is not None:
        wrong &= result.true == true_class
    if predicted_class is not None:
        wrong &= result.predicted == predicted_class
    indices = np.flatnonzero(wrong)
    confidence = result.confidence[indices]
    order = np.argsort(-confidence if descending else confidence, kind="stable")
    return indices[order]


# --- Parameters and the first layer's weights ---------------------------------

def parameter_table(model: nn.Module) -> dict:
    """List every parameter tensor, as the tutorial does with `model.parameters()`.

    Returns {"rows": [{"layer", "parameter", "name", "shape", "count"}, ...], "total": int},
    with rows in the model's order, for example layer "layers.0", parameter "weight",
    shape [32, 784], count 25088."""
    rows = []
    for name, param in model.named_parameters():
        layer, _, kind = name.rpartition(".")
        rows.append({"layer": layer, "parameter": kind, "name": name,
                     "shape": list(param.shape), "count": param.numel()})
    return {"rows": rows, "total": sum(row["count"] for row in rows)}


def _linear_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    layers = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear layer to inspect")
    return layers


def first_layer_weights(model: nn.Module) -> np.ndarray:
    """Return the first Linear layer's weights as (units, 28, 28) float32, one image per unit.

    Each image shows how much each input pixel pushes that unit up (positive) or
    down (negative). With no hidden layer the first layer is the output layer,
    so there are 10 images, one per class."""
    name, layer = _linear_layers(model)[0]
    if layer.in_features != INPUT_SIZE:
        raise ValueError(f"layer {name} takes {layer.in_features} inputs, not the {INPUT_SIZE} pixels of an image")
    return layer.weight.detach().cpu().reshape(layer.out_features, 28, 28).numpy().copy()


# --- Weight and gradient distributions during training ------------------------

def _symmetric_limit(values: torch.Tensor) -> torch.Tensor:
    """Return the largest finite |value| as a 0-dim tensor on the values' device (1.0 when all are 0)."""
    limit = values.detach().abs().nan_to_num(0.0, posinf=0.0, neginf=0.0).max()
    return torch.where(limit > 0, limit, torch.ones_like(limit))


class WeightRecorder:
    """Histograms of each Linear layer's weights and gradients, one entry per epoch.

    Pass it to `fit` as the callback, or call it from your own callback with
    fit's Progress. After every epoch it stores a histogram of each layer's
    weights, and the sum of the histograms of the gradients it captured during
    that epoch. Gradients are captured by hooks on the weight tensors on every
    `every`-th backward pass and binned on the device with `torch.histc`. A
    layer with more than `max_samples` weights contributes a fixed random
    sample of that many gradient entries per capture, which bounds the cost of
    a capture whatever the layer's size. The only copies to the host are one
    max per layer at the first capture of an epoch and one per layer at the
    end of an epoch.

    Bins are `bins` equal intervals of [-limit, limit], where limit is the
    largest |weight| at the end of the epoch, or the largest |gradient| of the
    epoch's first capture. Later gradients outside that range are counted in
    the end bins and in "clipped". NaN gradients are not counted.

    `data` (also returned by `to_dict`) is plain lists and numbers:
    {"layers": [name, ...], "shapes": [[out, in], ...], "bins": int, "every": int,
     "samples": [gradient entries binned per capture, per layer],
     "epochs": [{"epoch": int,
                 "weights": [{"edges", "counts", "min", "max", "mean", "std"} per layer],
                 "gradients": [{"edges", "counts", "captures", "clipped"} or None per layer]}]}
    Weight counts cover every weight. The first entry is recorded at
    construction (its epoch is `epoch`) and has no gradients.
    """

    def __init__(self, model: nn.Module, bins: int = 41, every: int = 10, epoch: int = 0,
                 max_samples: int = 65_536):
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise ValueError(f"bins {bins!r} is invalid: choose a whole number of at least 2")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every {every!r} is invalid: choose a whole number of batches, at least 1")
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
            raise ValueError(f"max_samples {max_samples!r} is invalid: choose a whole number, at least 1")
        self.layers = _linear_layers(model)
        self.bins = bins
        self.every = every
        # A fixed seed, so a model gets the same sample in every run.
        generator = torch.Generator().manual_seed(0)
        self._samples = [
            None if layer.weight.numel() <= max_samples
            else torch.randperm(layer.weight.numel(), generator=generator)[:max_samples].to(layer.weight.device)
            for _, layer in self.layers]
        self.data = {"layers": [name for name, _ in self.layers],
                     "shapes": [list(layer.weight.shape) for _, layer in self.layers],
                     "bins": bins, "every": every,
                     "samples": [min(layer.weight.numel(), max_samples) for _, layer in self.layers],
                     "epochs": []}
        self._calls = [0] * len(self.layers)
        self._pending: list[dict | None] = [None] * len(self.layers)
        self._handles = [layer.weight.register_hook(partial(self._capture, i))
                         for i, (_, layer) in enumerate(self.layers)]
        self.record_epoch(epoch)

    def __call__(self, progress) -> None:
        """Record an epoch when fit reports one; ignore batch reports."""
        if progress.kind == "epoch":
            self.record_epoch(progress.epoch)

    def _capture(self, index: int, grad: torch.Tensor) -> None:
        call = self._calls[index]
        self._calls[index] += 1
        if call % self.every:
            return None
        with torch.no_grad():
            grad = grad.detach().float()
            pending = self._pending[index]
            if pending is None:
                # The one host copy on the hot path: the bin range, once per layer and epoch.
                limit = float(_symmetric_limit(grad))
                pending = {"limit": limit, "captures": 0,
                           "counts": torch.zeros(self.bins, dtype=torch.float64, device=grad.device),
                           "clipped": torch.zeros((), dtype=torch.int64, device=grad.device)}
                self._pending[index] = pending
            limit = pending["limit"]
            sample = self._samples[index]
            if sample is not None:
                if sample.device != grad.device:  # the model moved after the recorder was made
                    sample = self._samples[index] = sample.to(grad.device)
                grad = grad.reshape(-1).index_select(0, sample)
            # histc counts in float32, exact per call up to 2**24 values in one bin; the sum is float64.
            pending["counts"] += torch.histc(grad.clamp(-limit, limit), self.bins, -limit, limit)
            pending["clipped"] += (grad.abs() > limit).sum()
            pending["captures"] += 1
        return None

    def record_epoch(self, epoch: int) -> dict:
        """Store the histograms of the weights now and of the gradients captured since the last record."""
        weights = [layer.weight.detach().float() for _, layer in self.layers]
        limits = torch.stack([_symmetric_limit(w) for w in weights]).tolist()
        weight_entries = []
        for w, limit in zip(weights, limits):
            counts = torch.histc(w, self.bins, -limit, limit)
            stats = torch.stack([w.min(), w.max(), w.mean(), w.std(correction=0)])
            counts, stats = counts.cpu(), stats.cpu()
            weight_entries.append({"edges": np.linspace(-limit, limit, self.bins + 1).tolist(),
                                   "counts": [int(c) for c in counts.tolist()],
                                   **dict(zip(("min", "max", "mean", "std"), stats.tolist()))})

        gradient_entries = []
        for pending in self._pending:
            if pending is None:
                gradient_entries.append(None)
                continue
            limit = pending["limit"]
            gradient_entries.append({"edges": np.linspace(-limit, limit, self.bins + 1).tolist(),
                                     "counts": [int(c) for c in pending["counts"].cpu().tolist()],
                                     "captures": pending["captures"],
                                     "clipped": int(pending["clipped"].cpu())})
        self.discard_pending()

        entry = {"epoch": int(epoch), "weights": weight_entries, "gradients": gradient_entries}
        self.data["epochs"].append(entry)
        return entry

    def discard_pending(self) -> None:
        """Drop the gradients captured since the last record, for example after TrainingDiverged."""
        self._calls = [0] * len(self.layers)
        self._pending = [None] * len(self.layers)

    def to_dict(self) -> dict:
        return copy.deepcopy(self.data)

    def close(self) -> None:
        """Remove the gradient hooks; the recorded data stays."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


# --- One digit through the network --------------------------------------------

def trace_digit(model: nn.Module, image) -> dict:
    """Run one image through the network layer by layer and explain its prediction.

    image: (28, 28), (1, 28, 28) or (784,), uint8 or floats in [0, 1] (what
    `core.preprocess.canvas_to_mnist` returns). The model must be an MnistModel,
    whose `layers` is a Sequential of Linear layers and activations.
    Returns numpy arrays:
      "input" (28, 28), "hidden" a list of (units,) activations after each hidden
      layer's activation function, "logits" (10,), "probabilities" (10,),
      "predicted" int, and "saliency" (28, 28): the gradient of the predicted
      class's logit with respect to each input pixel. The model's own
      gradients are not touched."""
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.Sequential):
        raise ValueError(f"{type(model).__name__} has no `layers` Sequential: trace_digit needs an MnistModel")
    x = _as_float_batch(torch.as_tensor(image).reshape(1, -1))
    device = _model_device(model)

    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x_in = x.to(device, copy=True).requires_grad_(True)
            out = x_in
            hidden = []
            for module in layers:
                out = module(out)
                if not isinstance(module, nn.Linear):
                    hidden.append(out[0].detach().cpu().numpy())
            logits = out[0]
            predicted = int(logits.argmax())
            # Differentiate with respect to the input only, so parameter .grad and hooks stay untouched.
            (saliency,) = torch.autograd.grad(logits[predicted], x_in)
    finally:
        model.train(was_training)

    logits = logits.detach().cpu()
    return {"input": x.reshape(28, 28).numpy(), "hidden": hidden, "logits": logits.numpy(),
            "probabilities": F.softmax(logits, dim=0).numpy(), "predicted": predicted,
            "saliency": saliency.reshape(28, 28).cpu().numpy()}
