"""The tutorial's feedforward network, and checkpoints that hold it."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 28 * 28
NUM_CLASSES = 10
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU}

MAX_HIDDEN_LAYERS = 6
MAX_HIDDEN_UNITS = 2048
# A checkpoint of the largest allowed model (6 x 2048 units) is about 90 MB.
MAX_CHECKPOINT_BYTES = 128 * 1024 * 1024
CHECKPOINT_FORMAT = "mnist-studio-checkpoint"


def check_architecture(hidden, activation: str) -> tuple[int, ...]:
    """Validate hidden layer sizes and activation; return the sizes as a tuple of ints."""
    hidden = tuple(hidden)
    if len(hidden) > MAX_HIDDEN_LAYERS:
        raise ValueError(f"{len(hidden)} hidden layers is too many: choose at most {MAX_HIDDEN_LAYERS}")
    for size in hidden:
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_HIDDEN_UNITS:
            raise ValueError(f"hidden layer size {size!r} is invalid: "
                             f"choose a whole number between 1 and {MAX_HIDDEN_UNITS}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r} is invalid: choose one of {sorted(ACTIVATIONS)}")
    return hidden


class MnistModel(nn.Module):
    """Feedforward network: 784 inputs, hidden layers with an activation, 10 logits."""

    def __init__(self, hidden=(32,), activation: str = "relu"):
        super().__init__()
        self.hidden = check_architecture(hidden, activation)
        self.activation = activation
        layers: list[nn.Module] = []
        width = INPUT_SIZE
        for size in self.hidden:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
            width = size
        layers.append(nn.Linear(width, NUM_CLASSES))
        self.layers = nn.Sequential(*layers)

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        """xb: (N, 1, 28, 28) or (N, 784) floats in [0, 1]; returns (N, 10) logits."""
        return self.layers(xb.reshape(xb.size(0), -1))

    def config(self) -> dict:
        return {"hidden": list(self.hidden), "activation": self.activation}


def predict_proba(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Return (N, 10) class probabilities for (N, 28, 28) or (N, 784) floats in [0, 1]."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        return F.softmax(model(images.to(device)), dim=1).cpu()


def save_checkpoint(model: MnistModel, path_or_file, **extra) -> None:
    """Save the state dict and config (plus any `extra` plain data such as history) with torch.save."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format": CHECKPOINT_FORMAT, "version": 1, "config": model.config(),
                "state_dict": state, **extra}, path_or_file)


def checkpoint_bytes(model: MnistModel, **extra) -> bytes:
    buffer = io.BytesIO()
    save_checkpoint(model, buffer, **extra)
    return buffer.getvalue()


def _load_error_reason(exc: Exception) -> str:
    """Return the first line of why torch.load failed, at most 200 characters."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError):
        # torch (2.6 to 2.14 at least) re-raises a weights-only rejection with
        # advice to load with weights_only=False, which would run any code in the
        # file. The unpickler's own message is kept as the exception's context.
        cause = exc.__context__
        text = "the weights-only unpickler rejected it"
        if isinstance(cause, pickle.UnpicklingError) and str(cause).strip():
            text += f": {str(cause).strip()}"
    lines = text.strip().splitlines()
    if isinstance(exc, pickle.UnpicklingError):
        return lines[0][:200]
    # Other errors can be as bare as "101" (a KeyError), so they keep their type's name.
    return f"torch.load raised {type(exc).__name__}" + (f": {lines[0][:200]}" if lines else "")


def load_checkpoint(path_or_bytes) -> tuple[MnistModel, dict]:
    """Load a checkpoint of this app; return (model in eval mode on the CPU, the whole checkpoint dict).

    Loads with weights_only=True, so no pickled code runs. Raises ValueError
    naming the file and the reason for anything that is not a valid checkpoint."""
    if isinstance(path_or_bytes, (bytes, bytearray)):
        name, data = "uploaded file", bytes(path_or_bytes)
    else:
        path = Path(path_or_bytes)
        name = str(path)
        try:
            size = path.stat().st_size
            if size > MAX_CHECKPOINT_BYTES:
                raise ValueError(f"{name}: {size} bytes is larger than the "
                                 f"{MAX_CHECKPOINT_BYTES // 2**20} MiB limit for a checkpoint")
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"{name}: cannot be read ({exc.strerror})") from None
    if not data:
        raise ValueError(f"{name}: the file is empty (0 bytes)")
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"{name}: {len(data)} bytes is larger than the "
                         f"{MAX_CHECKPOINT_BYTES // 2**20} MiB limit for a checkpoint")

    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError,
            AttributeError, TypeError, KeyError, IndexError, OSError) as exc:
        raise ValueError(f"{name}: not a readable PyTorch checkpoint ({_load_error_reason(exc)})") from None

    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{name}: not an MNIST Studio checkpoint (no '{CHECKPOINT_FORMAT}' header)")
    config, state = ckpt.get("config"), ckpt.get("state_dict")
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise ValueError(f"{name}: checkpoint has no config or state_dict")
    try:
        model = MnistModel(config.get("hidden", ()), config.get("activation", "relu"))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: invalid model config: {exc}") from None

    expected = model.state_dict()
    if set(state) != set(expected):
        raise ValueError(f"{name}: parameter names {sorted(state)} do not match the config "
                         f"{config.get('hidden')} (expected {sorted(expected)})")
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or tensor.shape != expected[key].shape:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"{name}: parameter {key} has shape {shape}, "
                             f"expected {tuple(expected[key].shape)}")
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{name}: parameter {key} contains NaN or infinite values")
    model.load_state_dict(state)
    model.eval()
    return model, ckpt
