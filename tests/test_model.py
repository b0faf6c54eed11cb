"""Tests for core.model: the network's shapes and checks, and checkpoints that
load only tensors and plain data."""

import io
import os
import pickle
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from core import model as model_module
from core.model import (
    CHECKPOINT_FORMAT,
    MnistModel,
    checkpoint_bytes,
    load_checkpoint,
    predict_proba,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def test_images(mnist) -> torch.Tensor:
    """The first 200 real test images as (200, 1, 28, 28) floats in [0, 1]."""
    return mnist.test_images[:200].float().div(255).unsqueeze(1)


def _write_torch(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def _valid_checkpoint(hidden=(32,)) -> dict:
    torch.manual_seed(0)
    model = MnistModel(hidden)
    return {"format": CHECKPOINT_FORMAT, "version": 1, "config": model.config(),
            "state_dict": model.state_dict()}


# --- MnistModel --------------------------------------------------------------

@pytest.mark.parametrize("hidden", [(), (32,), (128, 64), (64, 32, 16)], ids=str)
def test_model_output_shapes(hidden, test_images):
    model = MnistModel(hidden)
    images = test_images[:7]

    square = model(images)
    flat = model(images.reshape(7, 784))

    assert tuple(square.shape) == (7, 10)
    assert tuple(flat.shape) == (7, 10)
    assert torch.equal(square, flat)


@pytest.mark.parametrize("hidden", [(), (32,), (64, 32, 16)], ids=str)
def test_model_layer_sizes(hidden):
    model = MnistModel(hidden, "tanh")
    linears = [layer for layer in model.layers if isinstance(layer, nn.Linear)]
    activations = [layer for layer in model.layers if isinstance(layer, nn.Tanh)]

    assert [layer.in_features for layer in linears] == [784, *hidden]
    assert [layer.out_features for layer in linears] == [*hidden, 10]
    assert len(activations) == len(hidden)
    assert model.config() == {"hidden": list(hidden), "activation": "tanh"}


@pytest.mark.parametrize("activation, layer_type", [
    ("relu", nn.ReLU), ("tanh", nn.Tanh), ("sigmoid", nn.Sigmoid), ("leaky_relu", nn.LeakyReLU)])
def test_model_activations(activation, layer_type):
    model = MnistModel((16, 16), activation)
    assert sum(isinstance(layer, layer_type) for layer in model.layers) == 2


@pytest.mark.parametrize("hidden, named", [
    ((0,), "hidden layer size 0 is invalid"),
    ((-4,), "hidden layer size -4 is invalid"),
    ((2049,), "hidden layer size 2049 is invalid"),
    ((32, 1.5), "hidden layer size 1.5 is invalid"),
    ((True,), "hidden layer size True is invalid"),
    (("32",), "hidden layer size '32' is invalid"),
    ((8,) * 7, "7 hidden layers is too many"),
])
def test_model_rejects_hidden(hidden, named):
    with pytest.raises(ValueError) as excinfo:
        MnistModel(hidden)
    assert named in str(excinfo.value)


@pytest.mark.parametrize("activation", ["gelu", "ReLU", ""])
def test_model_rejects_activation(activation):
    with pytest.raises(ValueError) as excinfo:
        MnistModel((32,), activation)
    message = str(excinfo.value)
    assert f"activation {activation!r} is invalid" in message
    assert "relu" in message


def test_predict_proba_sums_to_one(test_images):
    torch.manual_seed(0)
    probs = predict_proba(MnistModel(), test_images[:20].squeeze(1))

    assert tuple(probs.shape) == (20, 10)
    assert torch.allclose(probs.sum(dim=1), torch.ones(20))
    assert (probs >= 0).all()


# --- Checkpoint round trip ---------------------------------------------------

@pytest.mark.parametrize("hidden", [(), (32,), (64, 32, 16)], ids=str)
def test_checkpoint_round_trip_file(tmp_path, test_images, hidden):
    torch.manual_seed(1)
    original = MnistModel(hidden, "leaky_relu")
    original.train()
    path = tmp_path / "model.pt"
    history = {"epochs": [{"epoch": 0, "val_acc": 0.1, "lr": None}], "batch_loss": [2.3]}
    save_checkpoint(original, path, history=history)

    loaded, ckpt = load_checkpoint(path)

    assert not loaded.training
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    assert loaded.config() == original.config()
    assert ckpt["history"] == history
    original.eval()
    with torch.no_grad():
        assert torch.equal(loaded(test_images), original(test_images))


def test_checkpoint_round_trip_bytes(test_images):
    torch.manual_seed(2)
    original = MnistModel((48,), "sigmoid").eval()

    loaded, ckpt = load_checkpoint(checkpoint_bytes(original, train_config={"seed": 2}))

    assert ckpt["train_config"] == {"seed": 2}
    with torch.no_grad():
        assert torch.equal(loaded(test_images), original(test_images))


# --- Checkpoints that load_checkpoint rejects ----------------------------------

class _SystemPayload:
    """Pickles to a call of os.system that creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _assert_rejected(path_or_bytes, *expected: str) -> str:
    with pytest.raises(ValueError) as excinfo:
        load_checkpoint(path_or_bytes)
    message = str(excinfo.value)
    name = "uploaded file" if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    assert message.startswith(f"{name}: "), message
    for text in expected:
        assert text in message
    return message


def test_payload_would_run_under_plain_pickle(tmp_path):
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(_SystemPayload(marker)))
    assert marker.exists()


# torch warns that it was not written for pickle protocol 4, which is the point of the file.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("protocol", [2, 4])
def test_checkpoint_rejects_pickle_payload(tmp_path, protocol):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_SystemPayload(marker), protocol=protocol))

    message = _assert_rejected(path, "not a readable PyTorch checkpoint",
                               "the weights-only unpickler rejected it")

    assert not marker.exists()
    assert "weights_only` set to `False`" not in message


def test_checkpoint_rejects_torch_save_payload(tmp_path):
    marker = tmp_path / "marker"
    checkpoint = _valid_checkpoint()
    checkpoint["history"] = _SystemPayload(marker)
    path = _write_torch(tmp_path / "evil.pt", checkpoint)

    _assert_rejected(path, "the weights-only unpickler rejected it", f"{os.system.__module__}.system")
    _assert_rejected(path.read_bytes(), "the weights-only unpickler rejected it", f"{os.system.__module__}.system")

    assert not marker.exists()


def test_checkpoint_rejects_wrong_shapes(tmp_path):
    checkpoint = _valid_checkpoint((32,))
    checkpoint["state_dict"] = MnistModel((64,)).state_dict()
    path = _write_torch(tmp_path / "shapes.pt", checkpoint)

    _assert_rejected(path, "parameter layers.0.weight has shape (64, 784), expected (32, 784)")


def test_checkpoint_rejects_wrong_names(tmp_path):
    checkpoint = _valid_checkpoint((32,))
    checkpoint["state_dict"] = MnistModel((32, 16)).state_dict()
    path = _write_torch(tmp_path / "names.pt", checkpoint)

    _assert_rejected(path, "parameter names", "do not match the config [32]")


def test_checkpoint_rejects_non_tensor_parameter(tmp_path):
    checkpoint = _valid_checkpoint()
    checkpoint["state_dict"]["layers.0.bias"] = [0.0] * 32
    path = _write_torch(tmp_path / "list.pt", checkpoint)

    _assert_rejected(path, "parameter layers.0.bias has shape list")


def test_checkpoint_rejects_invalid_config(tmp_path):
    checkpoint = _valid_checkpoint()
    checkpoint["config"] = {"hidden": [0], "activation": "relu"}
    path = _write_torch(tmp_path / "config.pt", checkpoint)

    _assert_rejected(path, "invalid model config", "hidden layer size 0 is invalid")


def test_checkpoint_rejects_truncated_file(tmp_path):
    content = checkpoint_bytes(MnistModel())
    path = tmp_path / "truncated.pt"
    path.write_bytes(content[: len(content) // 2])

    _assert_rejected(path, "not a readable PyTorch checkpoint")


@pytest.mark.parametrize("content", [b"", pytest.param(None, id="empty-path")])
def test_checkpoint_rejects_empty_file(tmp_path, content):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")

    _assert_rejected(path if content is None else content, "the file is empty (0 bytes)")


def test_checkpoint_error_names_exception_type(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello notes\n")

    _assert_rejected(path, "not a readable PyTorch checkpoint", "torch.load raised KeyError")


@pytest.mark.parametrize("size", [10, 4096])
def test_checkpoint_rejects_random_bytes(tmp_path, size):
    path = tmp_path / "random.pt"
    path.write_bytes(random.Random(size).randbytes(size))

    _assert_rejected(path, "not a readable PyTorch checkpoint")


def test_checkpoint_rejects_plain_state_dict(tmp_path):
    path = _write_torch(tmp_path / "state.pt", MnistModel().state_dict())

    _assert_rejected(path, "not an MNIST Studio checkpoint", f"no '{CHECKPOINT_FORMAT}' header")


@pytest.mark.parametrize("obj", [[1, 2, 3], torch.zeros(3), "text", None], ids=repr)
def test_checkpoint_rejects_non_dict(tmp_path, obj):
    path = _write_torch(tmp_path / "other.pt", obj)

    _assert_rejected(path, "not an MNIST Studio checkpoint")


def test_checkpoint_rejects_missing_state_dict(tmp_path):
    checkpoint = _valid_checkpoint()
    del checkpoint["state_dict"]
    path = _write_torch(tmp_path / "nostate.pt", checkpoint)

    _assert_rejected(path, "no config or state_dict")


def test_checkpoint_rejects_too_large(tmp_path, monkeypatch):
    content = checkpoint_bytes(MnistModel())
    path = tmp_path / "large.pt"
    path.write_bytes(content)
    monkeypatch.setattr(model_module, "MAX_CHECKPOINT_BYTES", len(content) - 1)

    _assert_rejected(path, f"{len(content)} bytes is larger than")
    _assert_rejected(content, f"{len(content)} bytes is larger than")


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_checkpoint_rejects_non_finite(tmp_path, bad_value):
    checkpoint = _valid_checkpoint()
    checkpoint["state_dict"]["layers.2.weight"][3, 5] = bad_value
    path = _write_torch(tmp_path / "nan.pt", checkpoint)

    _assert_rejected(path, "parameter layers.2.weight contains NaN or infinite values")


def test_checkpoint_rejects_missing_file(tmp_path):
    _assert_rejected(tmp_path / "absent.pt", "cannot be read")


def test_checkpoint_rejects_directory(tmp_path):
    _assert_rejected(tmp_path, "cannot be read")
